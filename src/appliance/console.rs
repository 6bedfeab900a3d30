//! The web console's view of the appliance: uploads and button presses become events for the
//! loop; records and pictures are read from the results folder.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use crate::appliance::events::{lock, BetweenThreads, Event};
use crate::hw::ButtonEvent;
use crate::pipeline::decode::dicom::identity::PatientIdentity;
use crate::record::Record;
use crate::store::results_dir::{self, ResultFile};
use crate::web::Console;

/// The web console's view of the appliance: uploads and button presses become events for the
/// loop; pictures and records are read from the results folder.
pub struct AppConsole {
    pub tx: Mutex<Sender<Event>>,
    pub shared: Arc<Mutex<BetweenThreads>>,
    pub results: PathBuf,
}

impl AppConsole {
    fn send(&self, event: Event) -> bool {
        lock(&self.tx).send(event).is_ok()
    }
}

impl Console for AppConsole {
    fn analyze_upload(
        &self,
        bytes: Vec<u8>,
        client_name: &str,
    ) -> Result<(String, Record), String> {
        let (reply, answer) = mpsc::channel();
        if !self.send(Event::Upload {
            bytes,
            name: client_name.to_string(),
            reply,
        }) {
            return Err("the appliance is shutting down".into());
        }
        answer
            .recv()
            .map_err(|_| "the appliance stopped before the upload was analysed".to_string())?
    }

    fn recent(&self, limit: usize) -> Vec<(String, Record)> {
        results_dir::recent(&self.results, limit)
    }

    fn result_file(&self, stem: &str, kind: ResultFile) -> Option<Vec<u8>> {
        results_dir::read(&self.results, stem, kind)
    }

    fn patient(&self, stem: &str) -> Option<PatientIdentity> {
        let shared = lock(&self.shared);
        let found = shared.patients.iter().rev().find(|(s, _)| s == stem);
        found.map(|(_, p)| p.clone())
    }

    fn panel_png(&self) -> Vec<u8> {
        lock(&self.shared).panel_png.clone()
    }

    fn press(&self, event: ButtonEvent) {
        self.send(Event::Button(event));
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(&lock(&self.shared).status).unwrap_or_default()
    }
}
