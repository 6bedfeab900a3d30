//! The appliance's state machine, owned by the loop thread: events (complete input files,
//! button presses, web uploads, ticks) → pipeline → results folder and journal → view state →
//! panel. Retries, the in-progress note and the status figures live here.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::appliance::events::{lock, BetweenThreads, Done, Event};
use crate::calibration::{self, heads, site_grades};
use crate::config::Config;
use crate::hw::{ButtonEvent, Panel};
use crate::pacs::outbox::Outbox;
use crate::pipeline::decode::dicom::identity::{self, PatientIdentity};
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::digest::sha256_hex;
use crate::pipeline::input::{self, InputError};
use crate::pipeline::model::{self, Classifier};
use crate::pipeline::{self, Analysis, AnalysisError};
use crate::record::{Record, Status};
use crate::store::journal::{self, Entry, Journal};
use crate::store::{atomic, results_dir};
use crate::ui::{self, StatusInfo, Study, View, ViewState};

/// How many studies the button can page back through.
const HISTORY: usize = 50;
/// How long a file whose results could not be written waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Why an input is rejected after the appliance stopped during each of its last analyses.
const STOPPED_ON_IT: &str = "the appliance stopped while analysing this file, twice: it may be \
    damaged or too large for this device's memory; it is not tried again (export it again, \
    or grade it on a computer)";
/// The loop wakes at least this often (systemd watchdog, retries, free-disk figure).
pub const TICK: Duration = Duration::from_secs(1);

/// The appliance's state, owned by the loop thread.
pub struct App<P: Panel> {
    config: Config,
    classifier: Classifier,
    journal: Journal,
    panel: P,
    history: VecDeque<Arc<Study>>,
    state: ViewState,
    shared: Arc<Mutex<BetweenThreads>>,
    limits: Limits,
    retries: Vec<(Instant, PathBuf)>,
    /// The appliance's own newest problem (results not written, model failed); shown before the
    /// watcher's.
    error: Option<String>,
    /// Where graded DICOM studies are queued for the PACS, and what wakes its sender.
    outbox: Option<(Outbox, Sender<()>)>,
}

impl<P: Panel> App<P>
where
    P::Error: std::fmt::Debug,
{
    pub fn new(
        config: Config,
        classifier: Classifier,
        panel: P,
        shared: Arc<Mutex<BetweenThreads>>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.results)?;
        let journal = Journal::open(&config.results)?;
        let limits = Limits {
            max_file_bytes: config.max_file_mb * 1024 * 1024,
            ..Limits::default()
        };
        let mut state = ViewState::default();
        state.status.model = format!("{} ({})", classifier.card().name, classifier.variant);
        state.status.model_choice =
            (config.model_choice.as_ref()).and_then(|choice| choice.describe(&classifier.variant));
        state.status.head = classifier.head_id().name;
        state.status.processed = journal.len() as u64;
        state.status.rejected = journal
            .iter()
            .filter(|e| e.status == Status::Rejected)
            .count() as u64;
        let mut app = App {
            config,
            classifier,
            journal,
            panel,
            history: VecDeque::new(),
            state,
            shared,
            limits,
            retries: Vec::new(),
            error: None,
            outbox: None,
        };
        app.refresh_status();
        app.show();
        Ok(app)
    }

    /// Queues every graded DICOM study from now on in `outbox` for the PACS, and wakes its sender.
    pub fn send_results_to(&mut self, outbox: Outbox, wake: Sender<()>) {
        self.outbox = Some((outbox, wake));
    }

    /// Reacts to one event. Returns false when the loop should end (`--exit-when-idle`).
    pub fn handle(&mut self, event: Event, exit_when_idle: bool) -> bool {
        match event {
            Event::File(path) => self.process_file(&path),
            Event::Upload { bytes, name, reply } => {
                let _ = reply.send(self.process_upload(bytes, &name));
            }
            Event::Button(b) => self.press(b),
            Event::Calibrate { force, reply } => {
                let _ = reply.send(self.calibrate(force));
            }
            Event::RevertHead { reply } => {
                let _ = reply.send(self.revert_head());
            }
            // Inputs whose results could not be written are not journaled: the next start retries them.
            Event::WatcherIdle => return !exit_when_idle,
        }
        true
    }

    /// Periodic work: retries that are due, and fresh status figures.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let had_retries = !self.retries.is_empty();
        // One at a time, so the others still count as waiting while one is done; one that fails
        // again goes to the back with a later time.
        while let Some(i) = self.retries.iter().position(|(at, _)| *at <= now) {
            let (_, path) = self.retries.remove(i);
            self.process_file(&path);
        }
        if had_retries {
            self.clear_error_when_nothing_waits(); // the last ones may have gone, or been done
        }
        let before = self.state.status.clone();
        self.refresh_status();
        if status_changed(&before, &self.state.status) && self.state.view == View::Status {
            self.show();
        } else {
            lock(&self.shared).status = self.state.status.clone(); // the console reads it
        }
    }

    /// Fits a site head to the knees the clinician graded in the console (`site_grades`), with
    /// the shipped head's features, exactly as `kneescreen calibrate` does; when it becomes
    /// active, the classifier is loaded again with it.
    fn calibrate(&mut self, force: bool) -> Result<serde_json::Value, String> {
        let grades = site_grades::load(&self.config.results)?;
        let target = self.config.oa_target_sensitivity;
        self.classifier
            .without_site_head(target)
            .map_err(|e| e.to_string())?;
        self.state.busy = Some("calibration".into());
        self.show();
        let collected = site_grades::examples(&self.config.results, &grades, &self.classifier);
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let studies = grades.len();
        let fitted = calibration::calibrate(
            &collected.examples,
            &self.classifier,
            &format!("console: knees graded by the clinician in {studies} studies"),
            target,
            calibration::LAMBDA,
            &created,
        )
        .map_err(|e| e.to_string())
        .and_then(|c| heads::keep(&self.models_dir(), c, force).map_err(|e| e.to_string()));
        self.state.busy = None;
        let reloaded = self.reload_classifier();
        let saved = fitted?;
        reloaded?;
        let mut answer = saved.to_json(&collected.refused);
        answer["report"] = saved.to_text(collected.refused.len()).into();
        eprintln!(
            "kneescreen: calibration from the console: {} ({})",
            saved.path.display(),
            if saved.activated {
                "active"
            } else {
                "not activated"
            }
        );
        Ok(answer)
    }

    /// Goes back to the shipped head (site heads stay on disk).
    fn revert_head(&mut self) -> Result<serde_json::Value, String> {
        let was = heads::revert(&self.models_dir()).map_err(|e| e.to_string())?;
        self.reload_classifier()?;
        eprintln!("kneescreen: back to the shipped head");
        Ok(serde_json::json!({ "was": was, "head": self.state.status.head }))
    }

    fn models_dir(&self) -> PathBuf {
        (self.config.models_dir.clone()).unwrap_or_else(model::default_models_dir)
    }

    /// The classifier again from the models folder (with whichever head is active there now).
    fn reload_classifier(&mut self) -> Result<(), String> {
        match load_classifier(&self.config) {
            Ok(c) => {
                self.classifier = c;
                self.state.status.head = self.classifier.head_id().name;
                self.show();
                Ok(())
            }
            Err(e) => {
                let msg = format!("the model could not be loaded again: {e:#}");
                self.fail(msg.clone());
                Err(msg)
            }
        }
    }

    /// Inputs that could not be finished and wait to be tried again.
    pub fn unfinished(&self) -> usize {
        self.retries.len()
    }

    fn press(&mut self, event: ButtonEvent) {
        match event {
            ButtonEvent::Next => self.state.next(),
            ButtonEvent::Previous => {
                // Long press: one study back, wrapping to the newest.
                if !self.history.is_empty() {
                    self.state.history_index = match self.state.history_index {
                        0 => self.history.len() - 1,
                        i => i - 1,
                    };
                    let study = self.history.get(self.state.history_index).cloned();
                    self.state.open(study);
                }
            }
        }
        self.show();
    }

    fn process_file(&mut self, path: &Path) {
        let source = path.display().to_string();
        let bytes = match input::read_input(path, self.limits.max_file_bytes) {
            Ok(b) => b,
            Err(InputError::Missing) => {
                eprintln!("kneescreen: {source}: gone before it could be read (stick pulled?)");
                return;
            }
            Err(e) => {
                // No content to key on: the file's identity (path, size, mtime) keys the journal.
                let hash = identity_hash(path);
                let key = format!("unread-{hash}");
                if self.done_before(&key).is_none() {
                    let record = Record::rejected(&source, None, &e.to_string());
                    let stem = results_dir::result_stem(path, &hash);
                    let rejected = Analysis::rejected(record);
                    let _ = self.finish(rejected, None, key, &source, stem, Some(path));
                }
                return;
            }
        };
        let sha = sha256_hex(&bytes);
        if self.done_before(&sha).is_some() {
            return; // the same bytes were already graded (another name, another stick, a restart)
        }
        let stem = results_dir::result_stem(path, &sha);
        let _ = self.analyse(&bytes, &source, stem, sha, Some(path));
    }

    fn process_upload(&mut self, bytes: Vec<u8>, name: &str) -> Done {
        let sha = sha256_hex(&bytes);
        let source = format!("upload: {name}"); // the console has sanitised the client's name
        if let Some((stem, record)) = self.done_before(&sha) {
            // Graded before (perhaps before a restart): the console may not hold its patient.
            if let Some(p) = self.patient_of(&bytes, &record) {
                self.remember_patient(&stem, &p);
            }
            return Ok((stem, record));
        }
        let stem = results_dir::result_stem(Path::new(name), &sha);
        // Keep the uploaded bytes: the study must stay reproducible, and nothing else holds them.
        let upload = results_dir::upload_path(&self.config.results, &stem);
        upload
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| atomic::write_atomic(&upload, &bytes))
            .map_err(|e| format!("cannot store the upload: {e}"))?;
        self.analyse(&bytes, &source, stem, sha, None)
    }

    /// The result stem and record of an input done before, if its record is still in the results
    /// folder (someone may have cleared the folder to make room: then it is done again).
    fn done_before(&self, key: &str) -> Option<(String, Record)> {
        let stem = &self.journal.get(key)?.stem;
        let record = results_dir::read_record(&self.config.results, stem)?;
        Some((stem.clone(), record))
    }

    fn analyse(
        &mut self,
        bytes: &[u8],
        source: &str,
        stem: String,
        key: String,
        path: Option<&Path>,
    ) -> Done {
        self.state.busy = Some(source.rsplit('/').next().unwrap_or(source).to_string());
        self.show();
        let stopped_before = self.journal.begin(&key, source).unwrap_or_else(|e| {
            eprintln!("kneescreen: cannot note the input in progress in the results folder: {e}");
            0
        });
        let analysis = if stopped_before >= journal::MAX_ATTEMPTS {
            Analysis::rejected(Record::rejected(source, Some(key.clone()), STOPPED_ON_IT))
        } else {
            match pipeline::analyze(bytes, source, &key, &self.classifier, &self.limits) {
                Ok(a) => a,
                Err(AnalysisError::Rejected(e)) => {
                    Analysis::rejected(Record::rejected(source, Some(key.clone()), &e.to_string()))
                }
                Err(AnalysisError::Model(e)) => {
                    self.journal.end(&key, false);
                    self.retry_later(path);
                    self.state.busy = None;
                    self.fail(format!("{source}: internal error: {e}"));
                    return Err(e.to_string());
                }
            }
        };
        let patient = self.patient_of(bytes, &analysis.record);
        let finished = self.finish(analysis, patient, key.clone(), source, stem, path);
        self.journal.end(&key, finished.is_ok());
        finished
    }

    /// The patient of a graded DICOM input, only when the configuration shows identity.
    fn patient_of(&self, bytes: &[u8], record: &Record) -> Option<PatientIdentity> {
        match record.grading() {
            Some(g) if g.dicom.is_some() && self.config.show_patient_identity => {
                identity::read_patient_identity(bytes, &self.limits)
            }
            _ => None,
        }
    }

    /// Keeps a study's patient for the console: in memory only, for the last `HISTORY` studies.
    fn remember_patient(&self, stem: &str, patient: &PatientIdentity) {
        let mut shared = lock(&self.shared);
        shared
            .patients
            .push_back((stem.to_string(), patient.clone()));
        if shared.patients.len() > HISTORY {
            shared.patients.pop_front();
        }
    }

    /// Writes the results, then the journal entry (a crash in between only redoes this input),
    /// and shows the new study.
    fn finish(
        &mut self,
        analysis: Analysis,
        patient: Option<PatientIdentity>,
        key: String,
        source: &str,
        stem: String,
        path: Option<&Path>,
    ) -> Done {
        self.state.busy = None;
        // Queued for the PACS before the journal entry: a stop in between grades the input
        // again and finds it queued, instead of leaving it out of the outbox.
        let written = results_dir::write_analysis(&self.config.results, &stem, &analysis)
            .map(|_| self.queue_for_pacs(&analysis.record, &stem, path))
            .and_then(|_| {
                self.journal.append(Entry::new(
                    key,
                    source.to_string(),
                    stem.clone(),
                    analysis.record.status(),
                ))
            });
        if let Err(e) = written {
            let msg = format!("cannot write results for {source}: {e}");
            self.retry_later(path);
            self.fail(msg.clone());
            return Err(msg);
        }
        match analysis.record.rejection() {
            Some(reason) => {
                self.state.status.rejected += 1;
                eprintln!("kneescreen: {source}: rejected: {reason}");
            }
            None => eprintln!(
                "kneescreen: {source}: graded, results {}",
                results_dir::ResultFile::Json.name(&stem)
            ),
        }
        self.state.status.processed += 1;
        self.clear_error_when_nothing_waits();
        let record = analysis.record.clone();
        if let Some(p) = &patient {
            self.remember_patient(&stem, p);
        }
        self.history.push_back(Arc::new(Study {
            patient,
            ..Study::from(analysis)
        }));
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.state.history_index = self.history.len() - 1;
        let newest = self.history.back().cloned();
        self.state.open(newest);
        self.show();
        Ok((stem, record))
    }

    /// Queues a graded DICOM study for the PACS (when one is configured). Its source is the input
    /// file, or the kept copy of an upload.
    fn queue_for_pacs(&mut self, record: &Record, stem: &str, path: Option<&Path>) {
        let Some((outbox, wake)) = &self.outbox else {
            return;
        };
        if record.grading().is_none_or(|g| g.dicom.is_none()) {
            return;
        }
        let source = path.map_or_else(
            || results_dir::upload_path(&self.config.results, stem),
            Path::to_path_buf,
        );
        match outbox.enqueue(stem, &source) {
            Ok(_) => {
                let _ = wake.send(());
            }
            Err(e) => self.fail(format!(
                "{stem} cannot be queued for the PACS: {e} (it stays in the results folder)"
            )),
        }
    }

    /// An input file that could not be finished is tried again after `RETRY_AFTER` (uploads are
    /// not: the console has told the client).
    fn retry_later(&mut self, path: Option<&Path>) {
        if let Some(p) = path {
            self.retries
                .push((Instant::now() + RETRY_AFTER, p.to_path_buf()));
        }
    }

    /// The appliance's own error stays until no input waits for a retry because of it.
    fn clear_error_when_nothing_waits(&mut self) {
        if self.retries.is_empty() && self.error.take().is_some() {
            self.refresh_status();
        }
    }

    fn fail(&mut self, msg: String) {
        eprintln!("kneescreen: {msg}");
        self.error = Some(msg);
        self.refresh_status();
        self.show();
    }

    fn refresh_status(&mut self) {
        let shared = lock(&self.shared);
        self.state.status.watched = shared.watched.clone();
        self.state.status.queue = shared.watcher_pending + self.retries.len();
        self.state.status.last_error = (self.error.clone())
            .or(shared.button_error.clone())
            .or(shared.watcher_error.clone())
            .or(shared.outbox.as_ref().and_then(|o| o.last_error.clone()));
        self.state.status.dicom = shared.dicom.as_ref().map(|a| lock(a).clone());
        self.state.status.outbox = shared.outbox.clone();
        self.state.status.console_certificate = shared.console_certificate.clone();
        drop(shared);
        self.state.status.free_disk_bytes = free_disk_bytes(&self.config.results);
    }

    /// Draws the current state and sends it to the panel (and the web console's mirror).
    fn show(&mut self) {
        self.state.history_len = self.history.len();
        if let Err(e) = ui::render(&mut self.panel, &self.state) {
            eprintln!("kneescreen: drawing failed: {e:?}");
        }
        if let Err(e) = self.panel.flush() {
            eprintln!("kneescreen: the display did not take the frame: {e:#}");
        }
        let mut shared = lock(&self.shared);
        shared.status = self.state.status.clone();
        shared.panel_png = self.panel.frame_png().unwrap_or_else(|| self.mirror_png());
    }

    /// The current view drawn off-screen for the web console, when the panel keeps no PNG itself.
    fn mirror_png(&self) -> Vec<u8> {
        let size = self.panel.bounding_box().size;
        let mut frame = crate::hw::VirtualPanel::new(size.width, size.height, None);
        let Ok(()) = ui::render(&mut frame, &self.state);
        let _ = frame.flush();
        frame.png()
    }
}

/// The classifier the configuration names, with its thread count and OA operating point.
pub fn load_classifier(config: &Config) -> anyhow::Result<Classifier> {
    let mut classifier = model::load_classifier(config.models_dir.as_deref(), &config.model)?;
    anyhow::ensure!(
        classifier.signer.is_some(),
        "the appliance grades only with signed models: {} is a model file given by path, which no \
         card signs; name a variant of the card (int8, fp32)",
        config.model
    );
    if let Some(threads) = config.inference_threads {
        classifier.set_threads(threads);
    }
    classifier.set_target_sensitivity(config.oa_target_sensitivity)?;
    Ok(classifier)
}

fn status_changed(a: &StatusInfo, b: &StatusInfo) -> bool {
    a.queue != b.queue
        || a.watched != b.watched
        || a.last_error != b.last_error
        || a.dicom != b.dicom
        || a.outbox != b.outbox
        || a.free_disk_bytes.map(|v| v >> 20) != b.free_disk_bytes.map(|v| v >> 20)
}

/// SHA-256 of what is known of a file that could not be read: its path, size and modification
/// time (its journal key is `unread-` and this).
fn identity_hash(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sha256_hex(format!("{}|{size}|{mtime}", path.display()).as_bytes())
}

/// Free space on the filesystem holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
