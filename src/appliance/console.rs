//! The web console's view of the appliance: uploads and button presses become events for the
//! loop; records and pictures are read from the results folder.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use crate::appliance::events::{lock, BetweenThreads, Event};
use crate::calibration::{self, site_grades};
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
    /// One grade is written at a time (each write reads the file, changes one knee, replaces it).
    pub grades_lock: Mutex<()>,
}

/// What the loop answers a calibration request with.
type Answer = Result<serde_json::Value, String>;

impl AppConsole {
    fn send(&self, event: Event) -> bool {
        lock(&self.tx).send(event).is_ok()
    }

    /// Sends the event `make` builds and waits for the loop's answer.
    fn ask(&self, make: impl FnOnce(mpsc::Sender<Answer>) -> Event) -> Answer {
        let (reply, answer) = mpsc::channel();
        if !self.send(make(reply)) {
            return Err("the appliance is shutting down".into());
        }
        answer
            .recv()
            .map_err(|_| "the appliance stopped before it answered".to_string())?
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

    fn site_grades(&self) -> serde_json::Value {
        let (grades, error) = match site_grades::load(&self.results) {
            Ok(g) => (g, None),
            Err(e) => (Default::default(), Some(e)),
        };
        serde_json::json!({
            "counts": site_grades::counts(&grades),
            "min_knees": calibration::MIN_KNEES,
            "head": lock(&self.shared).status.head,
            "grades": grades,
            "error": error,
        })
    }

    fn set_site_grade(&self, stem: &str, knee: usize, grade: Option<u8>) -> Result<(), String> {
        let _one_at_a_time = lock(&self.grades_lock);
        site_grades::set(&self.results, stem, knee, grade)
    }

    fn calibrate(&self, force: bool) -> Answer {
        self.ask(|reply| Event::Calibrate { force, reply })
    }

    fn revert_head(&self) -> Answer {
        self.ask(|reply| Event::RevertHead { reply })
    }
}
