//! The store SCU: sends DICOM instances to a peer (the clinic's PACS) by C-STORE, all of them in
//! one association, and tells which the peer confirmed.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::{ClientAssociation, ClientAssociationOptions};

use super::dimse::{self, Next};
use crate::pipeline::decode::dicom::error_chain;

/// A DICOM node to send to: its AE title, host and port (written `AE@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
    }
}

impl std::str::FromStr for Peer {
    type Err = String;

    /// `AE_TITLE@HOST:PORT`, e.g. `ORTHANC@192.168.1.20:4242`.
    fn from_str(s: &str) -> Result<Peer, String> {
        let bad = || {
            format!("{s:?}: write the PACS as AE_TITLE@HOST:PORT, e.g. ORTHANC@192.168.1.20:4242")
        };
        let (ae, address) = s.split_once('@').ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let peer = Peer {
            ae_title: ae.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        };
        peer.check().map(|()| peer)
    }
}

impl Peer {
    /// An AE title is 1 to 16 characters of printable ASCII without backslash; a port is not 0.
    pub fn check(&self) -> Result<(), String> {
        check_ae_title(&self.ae_title)?;
        if self.host.is_empty() || self.port == 0 {
            return Err(format!("{self}: the PACS needs a host and a port (not 0)"));
        }
        Ok(())
    }
}

/// An AE title is 1 to 16 characters of printable ASCII, not all spaces, without backslash.
pub fn check_ae_title(title: &str) -> Result<(), String> {
    let ok = (1..=16).contains(&title.len())
        && !title.trim().is_empty()
        && title.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && !title.contains('\\');
    ok.then_some(()).ok_or_else(|| {
        format!("AE title {title:?}: use 1 to 16 letters, digits or -_ (no backslash)")
    })
}

/// One instance to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub data_set: InMemDicomObject,
}

/// Why a send did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No association: the peer is off, unreachable, or rejected us.
    #[error("the PACS {peer} cannot be reached: {why}")]
    Unreachable { peer: String, why: String },
    /// The peer answered a store with a failure status.
    #[error("the PACS refused an instance (status {status:#06x})")]
    Refused { status: u16 },
    /// The association broke or the peer misbehaved halfway.
    #[error("sending to the PACS failed: {0}")]
    Failed(String),
}

/// How long to wait for a connection, and for each answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The transfer syntaxes proposed for every instance (the peer picks).
const PROPOSED: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// Sends `instances` to `peer` in one association (over TLS with `tls`, trusting what it
/// trusts), calling `stored` with each SOP instance UID the peer confirms. Stops at the first
/// failure (what was confirmed before it stays confirmed).
pub fn send(
    peer: &Peer,
    calling_ae_title: &str,
    instances: &[Outgoing],
    tls: Option<&Arc<rustls::ClientConfig>>,
    stored: impl FnMut(&str),
) -> Result<(), SendError> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae_title)
        .called_ae_title(peer.ae_title.as_str())
        .connection_timeout(CONNECT_TIMEOUT)
        .read_timeout(ANSWER_TIMEOUT)
        .write_timeout(ANSWER_TIMEOUT);
    let mut classes: Vec<&str> = instances.iter().map(|i| i.sop_class_uid.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    for class in &classes {
        options = options.with_presentation_context(*class, PROPOSED.to_vec());
    }
    let address = format!("{}:{}", peer.host, peer.port);
    let unreachable = |e: dicom_ul::association::Error| SendError::Unreachable {
        peer: peer.to_string(),
        why: error_chain(&e),
    };
    match tls {
        Some(config) => {
            let options = options.tls_config(config.clone()).server_name(&peer.host);
            let association = options
                .establish_tls(address.as_str())
                .map_err(unreachable)?;
            send_on(association, instances, stored)
        }
        None => {
            let association = options.establish(address.as_str()).map_err(unreachable)?;
            send_on(association, instances, stored)
        }
    }
}

/// Sends `instances` on an established association, then releases it.
fn send_on<S>(
    mut association: ClientAssociation<S>,
    instances: &[Outgoing],
    mut stored: impl FnMut(&str),
) -> Result<(), SendError>
where
    S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket,
{
    let failed = |e: &(dyn std::error::Error + 'static)| SendError::Failed(error_chain(e));
    for (n, instance) in instances.iter().enumerate() {
        let context = association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax.trim_end_matches('\0') == instance.sop_class_uid
                    && pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance
            })
            .cloned()
            .ok_or_else(|| {
                SendError::Failed(format!(
                    "the PACS does not accept SOP class {}",
                    instance.sop_class_uid
                ))
            })?;
        let ts_uid = context.transfer_syntax.trim_end_matches('\0');
        let ts = TransferSyntaxRegistry
            .get(ts_uid)
            .ok_or_else(|| SendError::Failed(format!("unknown transfer syntax {ts_uid}")))?;
        let mut data = Vec::new();
        instance
            .data_set
            .write_dataset_with_ts_cs(&mut data, ts, SpecificCharacterSet::ISO_IR_192)
            .map_err(|e| failed(&e))?;
        let message_id = (n + 1) as u16;
        let command = dimse::store_request(
            message_id,
            &instance.sop_class_uid,
            &instance.sop_instance_uid,
        );
        association
            .send(&dimse::command_pdu(context.id, command))
            .map_err(|e| failed(&e))?;
        {
            let mut writer = association.send_pdata(context.id);
            writer.write_all(&data).map_err(|e| failed(&e))?;
            writer.finish().map_err(|e| failed(&e))?;
        }
        let response = match dimse::receive_message(&mut association, 0).map_err(|e| failed(&e))? {
            Next::Message(m) if m.command.field == dimse::C_STORE_RSP => m.command,
            Next::Message(m) => {
                return Err(SendError::Failed(format!(
                    "the PACS answered with command {:#06x}",
                    m.command.field
                )))
            }
            Next::Release | Next::Closed => {
                return Err(SendError::Failed("the PACS ended the association".into()))
            }
        };
        let status = response.status.unwrap_or(dimse::CANNOT_UNDERSTAND);
        if !dimse::stored(status) {
            let _ = association.abort();
            return Err(SendError::Refused { status });
        }
        stored(&instance.sop_instance_uid);
    }
    association.release().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacs_is_written_ae_at_host_colon_port() {
        let p: Peer = "ORTHANC@192.168.1.20:4242".parse().unwrap();
        assert_eq!(
            (p.ae_title.as_str(), p.host.as_str(), p.port),
            ("ORTHANC", "192.168.1.20", 4242)
        );
        assert_eq!(p.to_string(), "ORTHANC@192.168.1.20:4242");
        for bad in [
            "ORTHANC",
            "ORTHANC@host",
            "@host:4242",
            "A@h:0",
            "WAY_TOO_LONG_AE_TITLE@h:1",
            "A\\B@h:1",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }
}
