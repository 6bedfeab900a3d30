//! The storage SCP: scanners and digitisers send radiographs here (C-STORE), and anyone may
//! check the node answers (C-ECHO). Each received instance is written as a DICOM file into the
//! received folder — the data set byte for byte as sent, fsync'd, renamed into place, its folder
//! fsync'd — and only then is success answered. The received folder is watched like an inbox,
//! so from there an instance takes the same path (queue, journal, analysis) as any file.
//!
//! Plain DICOM, or DICOM over TLS with the appliance's certificate when configured (then a
//! plain association is not answered). Each association runs on its own thread, a few at a time. Whatever a peer sends — a calling
//! AE title not allowed, an unknown SOP class or transfer syntax, garbage, a PDU that claims
//! gigabytes, a data set over the size limit, a connection cut halfway — ends that association
//! with a log line and never the appliance; nothing larger than the limits is ever held.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_object::FileMetaTableBuilder;
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::Association;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};

use super::dimse::{self, Next};
use super::{sanitised_uid, NodeActivity, ACCEPTED_SOP_CLASSES, ACCEPTED_TRANSFER_SYNTAXES};
use crate::pipeline::decode::dicom::error_chain;
use crate::pipeline::digest::sha256_hex;
use crate::store::atomic;

/// How the storage SCP is set up.
#[derive(Debug, Clone)]
pub struct ScpSettings {
    /// This node's AE title (what scanners are configured to call).
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty allows any.
    pub allowed_callers: Vec<String>,
    /// Where received instances are kept (watched as an inbox).
    pub received_dir: PathBuf,
    /// Largest data set accepted, in bytes (the appliance's file size limit).
    pub max_data_set_bytes: usize,
    /// DICOM over TLS with this configuration (the appliance's certificate); plain DICOM without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Associations served at once; more wait in the listen queue of the system.
const MAX_ASSOCIATIONS: usize = 4;
/// Largest PDU this node receives. Larger PDUs are refused as soon as their header is read.
const MAX_PDU: u32 = 64 * 1024;
/// A peer that sends nothing for this long loses its association.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Refuses calling AE titles not in the allowed list (when there is one).
struct AllowedCallers(Vec<String>);

impl AccessControl for AllowedCallers {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        _called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let calling = calling_ae_title.trim();
        if self.0.is_empty() || self.0.iter().any(|a| a.trim() == calling) {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// A running storage SCP.
pub struct StorageScp {
    pub addr: SocketAddr,
}

/// Listens on `addr` and serves associations on background threads until the process ends.
/// `activity` receives what happened, for the status view and the console.
pub fn serve(
    addr: SocketAddr,
    settings: ScpSettings,
    activity: Arc<Mutex<NodeActivity>>,
) -> std::io::Result<StorageScp> {
    std::fs::create_dir_all(&settings.received_dir)?;
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    crate::sync::lock(&activity).listening =
        Some(format!("{} on port {}", settings.ae_title, addr.port()));
    let settings = Arc::new(settings);
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if busy.load(Ordering::SeqCst) >= MAX_ASSOCIATIONS {
                note(
                    &activity,
                    format!(
                        "refused a connection from {}: {MAX_ASSOCIATIONS} associations already open",
                        peer(&stream)
                    ),
                    true,
                );
                continue; // dropping the stream closes it
            }
            busy.fetch_add(1, Ordering::SeqCst);
            let (settings, activity, busy) = (settings.clone(), activity.clone(), busy.clone());
            std::thread::spawn(move || {
                serve_association(stream, &settings, &activity);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(StorageScp { addr })
}

fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "an unknown address".into())
}

/// Logs one line about the node, and keeps it as the last association (and as the last error).
fn note(activity: &Mutex<NodeActivity>, line: String, error: bool) {
    eprintln!("kneescreen: DICOM: {line}");
    let mut a = crate::sync::lock(activity);
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    a.last_association = Some(format!("{when}: {line}"));
    if error {
        a.last_error = Some(line);
    }
}

fn options(
    settings: &ScpSettings,
) -> ServerAssociationOptions<
    'static,
    AllowedCallers,
    impl dicom_ul::association::server::Negotiation,
> {
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(AllowedCallers(settings.allowed_callers.clone()))
        .ae_title(settings.ae_title.clone())
        .max_pdu_length(MAX_PDU)
        .strict(true)
        .read_timeout(IDLE_TIMEOUT)
        .write_timeout(IDLE_TIMEOUT)
        .with_abstract_syntax(dimse::VERIFICATION);
    for uid in ACCEPTED_SOP_CLASSES {
        options = options.with_abstract_syntax(uid);
    }
    for uid in ACCEPTED_TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(uid);
    }
    options
}

/// One association, from negotiation to release (or to the first thing wrong).
fn serve_association(stream: TcpStream, settings: &ScpSettings, activity: &Mutex<NodeActivity>) {
    let from = peer(&stream);
    let established = match &settings.tls {
        Some(tls) => options(settings)
            .tls_config(tls.clone())
            .establish_tls(stream)
            .map(|a| serve_established(a, &from, settings, activity)),
        None => options(settings)
            .establish(stream)
            .map(|a| serve_established(a, &from, settings, activity)),
    };
    if let Err(e) = established {
        let why = match &e {
            dicom_ul::association::Error::Rejected { .. } => {
                "association rejected: its calling AE title is not allowed".to_string()
            }
            other => format!("not a DICOM association request ({})", error_chain(other)),
        };
        note(activity, format!("{from}: {why}"), true);
    }
}

/// One established association, from its first message to release (or to the first thing wrong).
fn serve_established<S>(
    mut association: ServerAssociation<S>,
    from: &str,
    settings: &ScpSettings,
    activity: &Mutex<NodeActivity>,
) where
    S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket,
{
    let caller = association.peer_ae_title().trim().to_string();
    let (mut stored, mut refused) = (0usize, 0usize);
    let outcome = loop {
        let next = match dimse::receive_message(&mut association, settings.max_data_set_bytes) {
            Ok(next) => next,
            Err(e) => break Err(e.to_string()),
        };
        let message = match next {
            Next::Release => {
                let _ = association.send(&Pdu::ReleaseRP);
                break Ok(());
            }
            Next::Closed => break Err("the peer closed the connection".into()),
            Next::Message(m) => m,
        };
        let command = &message.command;
        let reply = match command.field {
            dimse::C_ECHO_RQ => dimse::echo_response(command.message_id),
            dimse::C_STORE_RQ => {
                let status = match store(&association, &message, &caller, settings) {
                    Ok(path) => {
                        stored += 1;
                        crate::sync::lock(activity).received += 1;
                        eprintln!(
                            "kneescreen: DICOM: received from {caller}: {}",
                            path.display()
                        );
                        dimse::SUCCESS
                    }
                    Err((status, why)) => {
                        refused += 1;
                        note(
                            activity,
                            format!("{caller}: an instance was refused: {why}"),
                            true,
                        );
                        status
                    }
                };
                dimse::store_response(command, status)
            }
            other => break Err(format!("command {other:#06x} is not served here")),
        };
        if let Err(e) = association.send(&dimse::command_pdu(message.context_id, reply)) {
            break Err(format!("the answer could not be sent: {}", error_chain(&e)));
        }
    };
    let summary = format!("{caller} ({from}): {stored} stored, {refused} refused");
    match outcome {
        Ok(()) => note(activity, format!("{summary}, released"), false),
        Err(why) => {
            let _ = association.abort();
            note(
                activity,
                format!("{summary}; association ended: {why}"),
                true,
            );
        }
    }
}

/// Keeps one received instance; on failure, the status to answer and why.
fn store<S>(
    association: &ServerAssociation<S>,
    message: &dimse::Message,
    caller: &str,
    settings: &ScpSettings,
) -> Result<PathBuf, (u16, String)>
where
    S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket,
{
    let command = &message.command;
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == message.context_id)
        .ok_or((
            dimse::CANNOT_UNDERSTAND,
            "no such presentation context".to_string(),
        ))?;
    if context.abstract_syntax.trim_end_matches('\0') != command.sop_class_uid {
        return Err((
            dimse::CANNOT_UNDERSTAND,
            format!(
                "SOP class {} sent on a context for {}",
                command.sop_class_uid, context.abstract_syntax
            ),
        ));
    }
    let transfer_syntax = context.transfer_syntax.trim_end_matches('\0');
    let file = part10_file(command, transfer_syntax, caller, &message.data_set)
        .map_err(|e| (dimse::CANNOT_UNDERSTAND, e))?;
    keep(&settings.received_dir, &command.sop_instance_uid, &file).map_err(|e| {
        (
            dimse::OUT_OF_RESOURCES,
            format!("cannot keep it on disk: {e}"),
        )
    })
}

/// The instance as a DICOM file: preamble, file meta group, then the data set as it was sent.
fn part10_file(
    command: &dimse::Command,
    transfer_syntax: &str,
    caller: &str,
    data_set: &[u8],
) -> Result<Vec<u8>, String> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(command.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(command.sop_instance_uid.as_str())
        .transfer_syntax(transfer_syntax)
        .source_application_entity_title(caller)
        .implementation_class_uid(super::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(super::IMPLEMENTATION_VERSION)
        .build()
        .map_err(|e| format!("no file meta group can be made for it: {e}"))?;
    let mut file = Vec::with_capacity(data_set.len() + 512);
    file.extend_from_slice(&[0u8; 128]);
    file.extend_from_slice(b"DICM");
    meta.write(&mut file)
        .map_err(|e| format!("no file meta group can be made for it: {e}"))?;
    file.extend_from_slice(data_set);
    Ok(file)
}

/// Writes `file` durably as `<SOP instance UID>-<hash>.dcm` in `dir`. The same bytes again (a
/// scanner sending twice) find their file already there; other bytes under the same UID get a
/// file of their own, so nothing received is ever replaced.
fn keep(dir: &Path, sop_instance_uid: &str, file: &[u8]) -> std::io::Result<PathBuf> {
    let sha = sha256_hex(file);
    let path = dir.join(format!(
        "{}-{}.dcm",
        sanitised_uid(sop_instance_uid),
        &sha[..12]
    ));
    if std::fs::read(&path).is_ok_and(|old| old == file) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    atomic::write_durable(&path, file)?;
    Ok(path)
}
