//! The appliance loop: events (complete input files, button presses, web uploads, ticks) →
//! analysis → results folder and journal → view state → panel. One thread owns all of it; the
//! watcher, the button and the web console only send events.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::analysis::{self, Analysis, AnalysisError, Record};
use crate::config::Config;
use crate::decode::Limits;
use crate::dicom::{self, PatientIdentity};
use crate::hw::{ButtonEvent, Panel};
use crate::ingest::{self, Entry, Journal, Watcher};
use crate::model::{self, Classifier};
use crate::results::{self, InputError};
use crate::ui::{self, StatusInfo, Study, View, ViewState};
use crate::web::{Console, ResultFile, WebConfig};

/// How many studies the button can page back through.
const HISTORY: usize = 50;
/// How long a file whose results could not be written waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Why an input is rejected after the appliance stopped during each of its last analyses.
const STOPPED_ON_IT: &str = "the appliance stopped while analysing this file, twice: it may be \
    damaged or too large for this device's memory; it is not tried again (export it again, \
    or grade it on a computer)";
/// The loop wakes at least this often (systemd watchdog, retries, free-disk figure).
const TICK: Duration = Duration::from_secs(1);

/// An input done: its result stem and record; or why it could not be finished.
type Done = Result<(String, Record), String>;

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
}

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
        state.status.processed = journal.len() as u64;
        state.status.rejected = journal
            .iter()
            .filter(|e| e.status == analysis::Status::Rejected)
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
        };
        app.show();
        Ok(app)
    }

    /// Reacts to one event. Returns false when the loop should end (`--exit-when-idle`).
    pub fn handle(&mut self, event: Event, exit_when_idle: bool) -> bool {
        match event {
            Event::File(path) => self.process_file(&path),
            Event::Upload { bytes, name, reply } => {
                let _ = reply.send(self.process_upload(bytes, &name));
            }
            Event::Button(b) => self.press(b),
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

    fn press(&mut self, event: ButtonEvent) {
        match event {
            ButtonEvent::Next => self.state.view = self.state.view.next(),
            ButtonEvent::Previous => {
                // Long press: one study back, wrapping to the newest.
                if !self.history.is_empty() {
                    self.state.history_index = match self.state.history_index {
                        0 => self.history.len() - 1,
                        i => i - 1,
                    };
                    self.state.study = self.history.get(self.state.history_index).cloned();
                    self.state.view = View::Grade;
                }
            }
        }
        self.show();
    }

    fn process_file(&mut self, path: &Path) {
        let source = path.display().to_string();
        let bytes = match results::read_input(path, self.limits.max_file_bytes) {
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
                    let record = analysis::rejected(&source, None, &e.to_string());
                    let stem = ingest::result_stem(path, &hash);
                    let rejected = Analysis::rejected(record);
                    let _ = self.finish(rejected, None, key, &source, stem, Some(path));
                }
                return;
            }
        };
        let sha = model::sha256_hex(&bytes);
        if self.done_before(&sha).is_some() {
            return; // the same bytes were already graded (another name, another stick, a restart)
        }
        let stem = ingest::result_stem(path, &sha);
        let _ = self.analyse(&bytes, &source, stem, sha, Some(path));
    }

    fn process_upload(&mut self, bytes: Vec<u8>, name: &str) -> Done {
        let sha = model::sha256_hex(&bytes);
        let source = format!("upload: {name}"); // the console has sanitised the client's name
        if let Some((stem, record)) = self.done_before(&sha) {
            // Graded before (perhaps before a restart): the console may not hold its patient.
            if let Some(p) = self.patient_of(&bytes, &record) {
                self.remember_patient(&stem, &p);
            }
            return Ok((stem, record));
        }
        let stem = ingest::result_stem(Path::new(name), &sha);
        // Keep the uploaded bytes: the study must stay reproducible, and nothing else holds them.
        let uploads = self.config.results.join("uploads");
        std::fs::create_dir_all(&uploads)
            .and_then(|_| results::write_atomic(&uploads.join(format!("{stem}.bin")), &bytes))
            .map_err(|e| format!("cannot store the upload: {e}"))?;
        self.analyse(&bytes, &source, stem, sha, None)
    }

    /// The result stem and record of an input done before, if its record is still in the results
    /// folder (someone may have cleared the folder to make room: then it is done again).
    fn done_before(&self, key: &str) -> Option<(String, Record)> {
        let stem = &self.journal.get(key)?.stem;
        let json = std::fs::read(self.config.results.join(format!("{stem}.json"))).ok()?;
        Some((stem.clone(), serde_json::from_slice(&json).ok()?))
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
        let analysis = if stopped_before >= ingest::MAX_ATTEMPTS {
            Analysis::rejected(analysis::rejected(source, Some(bytes), STOPPED_ON_IT))
        } else {
            match analysis::analyze(bytes, source, &self.classifier, &self.limits) {
                Ok(a) => a,
                Err(AnalysisError::Rejected(e)) => {
                    Analysis::rejected(analysis::rejected(source, Some(bytes), &e.to_string()))
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
        match &record.result {
            Some(g) if g.dicom.is_some() && self.config.show_patient_identity => {
                dicom::read_patient_identity(bytes, &self.limits)
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
        let written =
            results::write_analysis(&self.config.results, &stem, &analysis).and_then(|_| {
                self.journal.append(Entry::new(
                    key,
                    source.to_string(),
                    stem.clone(),
                    analysis.record.status,
                ))
            });
        if let Err(e) = written {
            let msg = format!("cannot write results for {source}: {e}");
            self.retry_later(path);
            self.fail(msg.clone());
            return Err(msg);
        }
        match &analysis.record.reason {
            Some(reason) => {
                self.state.status.rejected += 1;
                eprintln!("kneescreen: {source}: rejected: {reason}");
            }
            None => eprintln!("kneescreen: {source}: graded, results {stem}.json"),
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
        self.state.study = self.history.back().cloned();
        self.state.view = View::Grade;
        self.show();
        Ok((stem, record))
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
            .or(shared.watcher_error.clone());
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

fn status_changed(a: &StatusInfo, b: &StatusInfo) -> bool {
    a.queue != b.queue
        || a.watched != b.watched
        || a.last_error != b.last_error
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
    model::sha256_hex(format!("{}|{size}|{mtime}", path.display()).as_bytes())
}

/// The data behind `mutex`, also after a thread panicked while holding it (the appliance goes on
/// with what is there rather than stopping).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

/// Runs the watcher on its own thread: complete files become events, and so does "nothing pending".
pub fn spawn_watcher(
    config: &Config,
    tx: Sender<Event>,
    shared: Arc<Mutex<BetweenThreads>>,
) -> std::thread::JoinHandle<()> {
    let settle = Duration::from_millis(config.settle_ms);
    let mut watcher = Watcher::new(
        config.inboxes.clone(),
        config.usb_mount_parent.clone(),
        settle,
    );
    std::thread::spawn(move || loop {
        // Files present at start are only yielded after `settle`: wait longer than that before calling it idle.
        let next = watcher.next(settle * 2 + Duration::from_millis(500));
        {
            let mut s = lock(&shared);
            s.watched = watcher.watched();
            s.watcher_error = watcher.last_error();
            s.watcher_pending = watcher.pending();
        }
        let sent = match next {
            Some(path) => tx.send(Event::File(path)),
            None if watcher.pending() == 0 => tx.send(Event::WatcherIdle),
            None => Ok(()),
        };
        if sent.is_err() {
            return; // the app has stopped
        }
    })
}

/// Set by SIGTERM (`systemctl stop`, shutdown): the loop ends after the event in hand.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// The event loop: runs until `--exit-when-idle` finds nothing left to do, or until SIGTERM (an
/// analysis under way is finished first, so a normal stop never counts as a stop on that input).
pub fn run_loop<P: Panel>(app: &mut App<P>, rx: Receiver<Event>, exit_when_idle: bool)
where
    P::Error: std::fmt::Debug,
{
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            request_stop as *const () as libc::sighandler_t,
        )
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    while !STOP_REQUESTED.load(Ordering::SeqCst) {
        match rx.recv_timeout(TICK) {
            Ok(event) => {
                if !app.handle(event, exit_when_idle) {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        app.tick();
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// The web console's view of the appliance: uploads and button presses become events for the
/// loop; pictures and records are read from the results folder.
struct AppConsole {
    tx: Mutex<Sender<Event>>,
    shared: Arc<Mutex<BetweenThreads>>,
    results: PathBuf,
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
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.results)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        files
            .into_iter()
            .filter_map(|(_, p)| {
                let record = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                Some((p.file_stem()?.to_string_lossy().into_owned(), record))
            })
            .take(limit)
            .collect()
    }

    fn result_file(&self, stem: &str, kind: ResultFile) -> Option<Vec<u8>> {
        let suffix = match kind {
            ResultFile::Json => "json",
            ResultFile::Overlay => "overlay.png",
            ResultFile::Input => "input.png",
        };
        std::fs::read(self.results.join(format!("{stem}.{suffix}"))).ok()
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

/// Starts the appliance with `config`: model, panel, watcher, button and web console, then the loop.
pub fn run(config: Config, exit_when_idle: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let classifier = model::load_classifier(config.models_dir.as_deref(), &config.model)?;
    std::fs::create_dir_all(&config.results)
        .with_context(|| format!("creating {}", config.results.display()))?;
    let shared = Arc::new(Mutex::new(BetweenThreads::default()));
    let (tx, rx) = mpsc::channel();
    let panel = crate::hw::open_panel(&config.panel, Some(config.results.join("panel.png")))?;
    let _watcher = spawn_watcher(&config, tx.clone(), shared.clone());
    if let Some(line) = &config.button.line {
        let ms = Duration::from_millis;
        let button = crate::hw::spawn_gpio_button(
            line,
            ms(config.button.long_press_ms),
            ms(config.button.debounce_ms),
            tx.clone(),
        )?;
        let shared = shared.clone();
        std::thread::spawn(move || {
            if let Ok(Err(e)) = button.join() {
                let msg = format!("the push-button stopped working ({e}): use the web console's button and check the wiring; restart to try again");
                eprintln!("kneescreen: {msg}");
                lock(&shared).button_error = Some(msg);
            }
        });
    }
    let _keyboard = crate::hw::spawn_keyboard(tx.clone());
    let _web = match config.web.enabled {
        true => {
            let console = AppConsole {
                tx: Mutex::new(tx.clone()),
                shared: shared.clone(),
                results: config.results.clone(),
            };
            let web_config = WebConfig {
                listen: config.web.listen,
                token: config.web.token.clone(),
                max_upload_bytes: config.web.max_upload_mb << 20,
                ..WebConfig::default()
            };
            let server = crate::web::serve(web_config, Arc::new(console))?;
            eprintln!("kneescreen: web console on http://{}", server.addr);
            Some(server)
        }
        false => None,
    };
    eprintln!(
        "kneescreen: watching {}; results in {}",
        config
            .inboxes
            .iter()
            .chain(&config.usb_mount_parent)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.results.display()
    );
    let mut app = App::new(config, classifier, panel, shared)?;
    run_loop(&mut app, rx, exit_when_idle);
    // A batch run reports what it could not finish; a stopped service has nothing to report.
    anyhow::ensure!(
        !exit_when_idle || app.retries.is_empty(),
        "{} input(s) could not be finished (see above); they are tried again at the next start",
        app.retries.len()
    );
    Ok(())
}
