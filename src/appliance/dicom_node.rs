//! The DICOM network threads of the appliance: the storage SCP that scanners send to (its
//! received folder is one of the watched inboxes), and the sender that empties the outbox into
//! the PACS. Both only report to the status; neither touches the loop's state.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::appliance::events::{lock, BetweenThreads};
use crate::config::Config;
use crate::dicom_net::scp::{self, ScpSettings};
use crate::dicom_net::{scu, NodeActivity};
use crate::pacs::outbox::{now_unix, Outbox};
use crate::pacs::{self, PacsSettings};
use crate::pipeline::decode::limits::Limits;

/// The sender sleeps until the next item is due or a study is queued, at least this long between
/// rounds (a round that could not save its items must not spin) and at most `SENDER_IDLE`.
const SENDER_PAUSE: Duration = Duration::from_secs(1);
const SENDER_IDLE: Duration = Duration::from_secs(60);

/// Starts the storage SCP when the configuration asks for it; its activity goes to `shared`.
pub fn start_scp(config: &Config, shared: &Arc<Mutex<BetweenThreads>>) -> anyhow::Result<()> {
    let Some(listen) = config.dicom.listen else {
        return Ok(());
    };
    let activity = Arc::new(Mutex::new(NodeActivity::default()));
    let mut settings = ScpSettings {
        ae_title: config.dicom.ae_title.clone(),
        allowed_callers: config.dicom.allowed_calling_ae_titles.clone(),
        received_dir: config.dicom.received.clone(),
        max_data_set_bytes: (config.max_file_mb << 20) as usize,
        tls: None,
    };
    let mut over_tls = String::new();
    if config.dicom.tls {
        let certificate = crate::tls::load(&config.certificate_source())?;
        over_tls = format!(
            " over TLS (certificate SHA-256 fingerprint {})",
            certificate.fingerprint
        );
        settings.tls = Some(certificate.config);
    }
    let scp = scp::serve(listen, settings, activity.clone()).map_err(|e| {
        anyhow::anyhow!("the DICOM node cannot listen on {listen}: {e} (is another DICOM program using the port?)")
    })?;
    eprintln!(
        "kneescreen: DICOM node {} on {}; received images kept in {}{over_tls}",
        config.dicom.ae_title,
        scp.addr,
        config.dicom.received.display()
    );
    lock(shared).dicom = Some(activity);
    Ok(())
}

/// Starts the sender when a PACS is configured. Returns what wakes it (a study was queued).
pub fn start_sender(
    config: &Config,
    shared: &Arc<Mutex<BetweenThreads>>,
) -> anyhow::Result<Option<(Outbox, Sender<()>)>> {
    let Some(peer) = config.pacs.peer() else {
        return Ok(None);
    };
    let outbox = Outbox::open(&config.results)?;
    let settings = PacsSettings {
        peer,
        calling_ae_title: config.dicom.ae_title.clone(),
        retry_min: Duration::from_secs(config.pacs.retry_min_s),
        retry_max: Duration::from_secs(config.pacs.retry_max_s),
        results: config.results.clone(),
        limits: Limits {
            max_file_bytes: config.max_file_mb << 20,
            ..Limits::default()
        },
        tls: match (&config.pacs.ca_cert, config.pacs.tls) {
            (Some(ca), true) => Some(crate::tls::client_config(ca)?),
            _ => None,
        },
    };
    let tls = if settings.tls.is_some() {
        " over TLS"
    } else {
        ""
    };
    eprintln!("kneescreen: results go to the PACS {}{tls}", settings.peer);
    let (wake, woken) = mpsc::channel();
    let (shared, box_) = (shared.clone(), outbox.clone());
    std::thread::spawn(move || loop {
        let round = pacs::deliver_due(&settings, &box_, &mut |objects, confirmed| {
            let tls = settings.tls.as_ref();
            scu::send(
                &settings.peer,
                &settings.calling_ae_title,
                objects,
                tls,
                |uid| confirmed(uid),
            )
        });
        lock(&shared).outbox = Some(round.status);
        let wait = round.next_due.map_or(SENDER_IDLE, |due| {
            Duration::from_secs(due.saturating_sub(now_unix())).min(SENDER_IDLE)
        });
        if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(wait.max(SENDER_PAUSE)) {
            return; // the appliance has stopped
        }
    });
    Ok(Some((outbox, wake)))
}
