//! What the appliance's threads say to each other: the events the loop reacts to, and the state
//! the loop publishes for the web console (panel frame, status, patients in memory).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use crate::dicom_net::NodeActivity;
use crate::hw::ButtonEvent;
use crate::pacs::outbox::OutboxStatus;
use crate::pipeline::decode::dicom::identity::PatientIdentity;
use crate::record::Record;
use crate::ui::StatusInfo;

/// An input done: its result stem and record; or why it could not be finished.
pub type Done = Result<(String, Record), String>;

/// Something the appliance must react to.
pub enum Event {
    /// A complete file appeared in an inbox or on a USB stick.
    File(PathBuf),
    /// A file uploaded through the web console; the record goes back on `reply`.
    Upload {
        bytes: Vec<u8>,
        name: String,
        reply: Sender<Done>,
    },
    Button(ButtonEvent),
    /// The console asks for a site head from the clinician's grades (`force`: activate it even
    /// without a cross-validated gain); the report, or why not, goes back on `reply`.
    Calibrate {
        force: bool,
        reply: Sender<Result<serde_json::Value, String>>,
    },
    /// The console asks to go back to the shipped head.
    RevertHead {
        reply: Sender<Result<serde_json::Value, String>>,
    },
    /// The watcher has nothing pending (used by `--exit-when-idle`).
    WatcherIdle,
}

impl From<ButtonEvent> for Event {
    fn from(b: ButtonEvent) -> Event {
        Event::Button(b)
    }
}

/// What the threads share: the loop writes the panel frame, status figures and patients for the
/// web console; the watcher and the button thread write what they found.
#[derive(Default)]
pub struct BetweenThreads {
    pub panel_png: Vec<u8>,
    pub status: StatusInfo,
    pub watched: Vec<String>,
    pub watcher_error: Option<String>,
    /// Set when the push-button's GPIO line stopped working (it stays dead until a restart).
    pub button_error: Option<String>,
    pub watcher_pending: usize,
    /// Patient identity of recent DICOM studies by result stem, newest last; only filled when
    /// the configuration shows identity, and only ever held in memory.
    pub patients: VecDeque<(String, PatientIdentity)>,
    /// The DICOM node's activity, written by its association threads (when it listens).
    pub dicom: Option<Arc<Mutex<NodeActivity>>>,
    /// The console's certificate fingerprint, when it speaks TLS.
    pub console_certificate: Option<String>,
    /// The outbox as the sender last saw it (when a PACS is configured).
    pub outbox: Option<OutboxStatus>,
}

pub use crate::sync::lock;
