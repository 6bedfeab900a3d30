//! Results to the clinic's PACS: every graded DICOM study is queued in the outbox (`outbox`), and
//! delivered as a Structured Report and Secondary Captures in the source's study (`report`) by
//! C-STORE (`dicom_net::scu`), retried with back-off until the PACS confirms each object.

pub mod outbox; // the persistent queue of studies to send; back-off
pub mod report; // the SR and Secondary Capture objects of a graded study

use std::path::PathBuf;
use std::time::Duration;

use crate::dicom_net::scu::{Outgoing, Peer, SendError};
use crate::pipeline::decode::dicom::identity;
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::input;
use crate::store::results_dir::{self, ResultFile};
use outbox::{backoff, now_unix, Item, Outbox, OutboxStatus};

/// Where results go and how often to try.
#[derive(Debug, Clone)]
pub struct PacsSettings {
    pub peer: Peer,
    /// This node's AE title (the calling AE title of every send).
    pub calling_ae_title: String,
    /// The first wait after a failure; it doubles with each failure up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub results: PathBuf,
    pub limits: Limits,
    /// DICOM over TLS, trusting what this configuration trusts.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Sends `objects` to the PACS, calling back with each SOP instance UID it confirms (the seam for
/// tests; in the appliance, `dicom_net::scu::send`).
pub type Send<'a> = dyn FnMut(&[Outgoing], &mut dyn FnMut(&str)) -> Result<(), SendError> + 'a;

/// What a round of deliveries leaves: the outbox's status, and when the next item is due
/// (seconds since 1970; `None` when nothing waits).
pub struct Round {
    pub status: OutboxStatus,
    pub next_due: Option<u64>,
}

/// Tries each item whose time has come, oldest first; an unreachable PACS ends the round (the
/// others wait as long as the item that found it unreachable).
pub fn deliver_due(settings: &PacsSettings, outbox: &Outbox, send: &mut Send) -> Round {
    let pending = outbox.pending();
    let mut waiting: Vec<Item> = Vec::new();
    let mut last_error = None;
    let mut unreachable_until = None;
    for mut item in pending.items {
        if unreachable_until.is_some() || item.not_before > now_unix() {
            waiting.push(item);
            continue;
        }
        let result = objects_of(settings, &item)
            .map_err(TryError::Prepare)
            .and_then(|objects| {
                let todo: Vec<Outgoing> = objects
                    .into_iter()
                    .filter(|o| !item.confirmed.contains(&o.sop_instance_uid))
                    .collect();
                if todo.is_empty() {
                    return Ok(()); // all confirmed before a stop that came before `mark_sent`
                }
                let confirmed = &mut item.confirmed;
                send(&todo, &mut |uid| confirmed.push(uid.to_string())).map_err(TryError::Send)
            });
        item.attempts += 1;
        let saved = match result {
            Ok(()) => {
                eprintln!(
                    "kneescreen: PACS: {} sent to {} ({} objects)",
                    item.stem,
                    settings.peer,
                    item.confirmed.len()
                );
                outbox.mark_sent(item)
            }
            Err(e) => {
                let wait = backoff(item.attempts, settings.retry_min, settings.retry_max);
                let why = format!(
                    "{}: {e}; next try in {}",
                    item.stem,
                    humantime::format_duration(wait)
                );
                eprintln!("kneescreen: PACS: {why}");
                item.last_error = Some(why.clone());
                item.not_before = now_unix() + wait.as_secs();
                last_error = Some(why);
                if let TryError::Send(SendError::Unreachable { .. }) = e {
                    unreachable_until = Some(item.not_before);
                }
                let saved = outbox.save(&item);
                waiting.push(item);
                saved
            }
        };
        if let Err(e) = saved {
            last_error = Some(format!("the outbox cannot be written: {e}"));
        }
    }
    let unreadable = (pending.unreadable.first()).map(|(path, e)| {
        format!(
            "the outbox item {} cannot be read ({e}); it is left as it is",
            path.display()
        )
    });
    let due = waiting.iter().map(|i| i.not_before).min();
    Round {
        status: OutboxStatus {
            pacs: settings.peer.to_string(),
            pending: waiting.len(),
            sent: outbox.sent_count(),
            last_error: (last_error.or(unreadable))
                .or_else(|| waiting.iter().find_map(|i| i.last_error.clone())),
        },
        next_due: due.map(|d| d.max(unreachable_until.unwrap_or(0))),
    }
}

#[derive(Debug, thiserror::Error)]
enum TryError {
    #[error("{0}")]
    Prepare(String),
    #[error("{0}")]
    Send(SendError),
}

/// The report and pictures of an item, made from its record, its pictures and its source file.
fn objects_of(settings: &PacsSettings, item: &Item) -> Result<Vec<Outgoing>, String> {
    let record = results_dir::read_record(&settings.results, &item.stem)
        .ok_or("its result is no longer in the results folder")?;
    let grading = record.grading().ok_or("it was not graded")?;
    let bytes = input::read_input(&item.source, settings.limits.max_file_bytes)
        .map_err(|e| format!("its source {} cannot be read: {e}", item.source.display()))?;
    let source = identity::read_elements(&bytes, &settings.limits, report::copied_tags())
        .ok_or("its source is not a DICOM file this device reads")?;
    let pictures = (1..=grading.knees.len().max(1))
        .map(|n| {
            let file = match grading.knees.len() {
                0 | 1 => ResultFile::Overlay,
                _ => ResultFile::KneeOverlay(n),
            };
            let png = results_dir::read(&settings.results, &item.stem, file)
                .ok_or_else(|| format!("its picture {} is missing", file.name(&item.stem)))?;
            image::load_from_memory(&png)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("its picture {} cannot be read: {e}", file.name(&item.stem)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = now.chars().filter(char::is_ascii_digit).collect();
    let inputs = report::Inputs {
        record: &record,
        source,
        pictures,
        date: digits[..8].to_string(),
        time: digits[8..14].to_string(),
    };
    report::objects(&inputs).map_err(|e| e.to_string())
}
