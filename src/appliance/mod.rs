//! The appliance (`kneescreen run`): one loop thread owns the state machine (`app`); the watcher
//! (`watch`), the push-button and the web console (`console`) only send it events (`events`).
//! This file wires them together and runs the loop until it is told to stop.

pub mod app; // the state machine: events → pipeline → results folder and journal → panel
pub mod console; // the web console's adapter over the loop and the results folder
pub mod dicom_node; // the storage SCP and the outbox sender threads
pub mod events; // what the threads send the loop, and what the loop publishes
pub mod watch; // the watcher's thread

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::hw::Panel;
use crate::web::WebConfig;
use app::{App, TICK};
use console::AppConsole;
use events::{lock, BetweenThreads, Event};
use watch::spawn_watcher;

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

/// Starts the appliance with `config`: model, panel, watcher, button and web console, then the loop.
pub fn run(config: Config, exit_when_idle: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let classifier = app::load_classifier(&config)?;
    std::fs::create_dir_all(&config.results)
        .with_context(|| format!("creating {}", config.results.display()))?;
    let shared = Arc::new(Mutex::new(BetweenThreads::default()));
    let (tx, rx) = mpsc::channel();
    let panel = crate::hw::open_panel(&config.panel, Some(config.results.join("panel.png")))?;
    let _watcher = spawn_watcher(&config, tx.clone(), shared.clone());
    dicom_node::start_scp(&config, &shared)?;
    let sender = dicom_node::start_sender(&config, &shared)?;
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
                grades_lock: Mutex::new(()),
            };
            let web_config = WebConfig {
                listen: config.web.listen,
                token: config.web.token.clone(),
                max_upload_bytes: config.web.max_upload_mb << 20,
                tls: Some(config.certificate_source()),
                ..WebConfig::default()
            };
            let server = crate::web::serve(web_config, Arc::new(console))?;
            match &server.fingerprint {
                Some(fp) => eprintln!(
                    "kneescreen: web console on {} (TLS certificate SHA-256 fingerprint {fp})",
                    server.url()
                ),
                None => eprintln!("kneescreen: web console on {}", server.url()),
            }
            lock(&shared).console_certificate = server.fingerprint.clone();
            Some(server)
        }
        false => None,
    };
    eprintln!(
        "kneescreen: watching {}; results in {}",
        config
            .watched_inboxes()
            .iter()
            .chain(&config.usb_mount_parent)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.results.display()
    );
    let mut app = App::new(config, classifier, panel, shared)?;
    if let Some((outbox, wake)) = sender {
        app.send_results_to(outbox, wake);
    }
    run_loop(&mut app, rx, exit_when_idle);
    // A batch run reports what it could not finish; a stopped service has nothing to report.
    anyhow::ensure!(
        !exit_when_idle || app.unfinished() == 0,
        "{} input(s) could not be finished (see above); they are tried again at the next start",
        app.unfinished()
    );
    Ok(())
}
