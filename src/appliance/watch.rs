//! The watcher's thread: complete input files become events for the loop, and so does "nothing
//! pending"; what it watches and its newest problem go to the status.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::appliance::events::{lock, BetweenThreads, Event};
use crate::config::Config;
use crate::ingest::Watcher;

/// Runs the watcher on its own thread: complete files become events, and so does "nothing pending".
pub fn spawn_watcher(
    config: &Config,
    tx: Sender<Event>,
    shared: Arc<Mutex<BetweenThreads>>,
) -> std::thread::JoinHandle<()> {
    let settle = Duration::from_millis(config.settle_ms);
    let mut watcher = Watcher::new(
        config.watched_inboxes(),
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
