//! The outbox `<results>/outbox/`: one JSON file per graded study waiting for the PACS, written
//! atomically when the study is graded and kept until the PACS has confirmed every object of it;
//! then it moves to `outbox/sent/`. A van offline for days keeps everything here and sends it,
//! once, when the PACS answers again. Items hold the result's stem and the source file's path,
//! never who the patient is (that is read from the source at send time).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::atomic::write_atomic;

/// The outbox folder's name inside the results folder, and that of its sent items.
pub const OUTBOX_DIR: &str = "outbox";
const SENT_DIR: &str = "sent";

/// One graded study waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The result's stem in the results folder.
    pub stem: String,
    /// The source DICOM file (its patient and study attributes are read from it when sending).
    pub source: PathBuf,
    /// When it was queued (RFC 3339).
    pub queued: String,
    /// Tries so far.
    pub attempts: u32,
    /// SOP instance UIDs the PACS has confirmed (not sent again).
    #[serde(default)]
    pub confirmed: Vec<String>,
    /// Why the last try failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Not tried before this time (seconds since 1970).
    #[serde(default)]
    pub not_before: u64,
    /// When the PACS confirmed the last object (sent items only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
}

/// What the status view and the console show of the outbox.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutboxStatus {
    /// The PACS results go to (`AE@host:port`).
    pub pacs: String,
    pub pending: usize,
    pub sent: usize,
    /// The newest failure still standing (cleared by the next success).
    pub last_error: Option<String>,
}

/// What the outbox folder holds.
#[derive(Debug, Default)]
pub struct Pending {
    /// The items waiting, oldest first.
    pub items: Vec<Item>,
    /// Files that cannot be read as items, and why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The outbox folder.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The wait before try `attempts + 1`: `min` doubled for each failed try, at most `max`.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    min.saturating_mul(factor).min(max)
}

impl Outbox {
    /// The outbox of a results folder (created when missing).
    pub fn open(results: &Path) -> io::Result<Outbox> {
        let dir = results.join(OUTBOX_DIR);
        fs::create_dir_all(dir.join(SENT_DIR))?;
        Ok(Outbox { dir })
    }

    fn pending_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.json"))
    }

    fn sent_path(&self, stem: &str) -> PathBuf {
        self.dir.join(SENT_DIR).join(format!("{stem}.json"))
    }

    /// Queues a graded study, unless it is queued or was sent already.
    pub fn enqueue(&self, stem: &str, source: &Path) -> io::Result<bool> {
        if self.pending_path(stem).exists() || self.sent_path(stem).exists() {
            return Ok(false);
        }
        let item = Item {
            stem: stem.to_string(),
            source: source.to_path_buf(),
            queued: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            attempts: 0,
            confirmed: Vec::new(),
            last_error: None,
            not_before: 0,
            sent: None,
        };
        self.save(&item)?;
        Ok(true)
    }

    /// Writes an item back after a try.
    pub fn save(&self, item: &Item) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(item).map_err(io::Error::other)?;
        write_atomic(&self.pending_path(&item.stem), &text)
    }

    /// Moves a fully confirmed item to `sent/`.
    pub fn mark_sent(&self, mut item: Item) -> io::Result<()> {
        item.sent = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        item.last_error = None;
        let text = serde_json::to_vec_pretty(&item).map_err(io::Error::other)?;
        write_atomic(&self.sent_path(&item.stem), &text)?;
        fs::remove_file(self.pending_path(&item.stem))
    }

    /// The items waiting, oldest first, and the files that cannot be read as items (left as
    /// they are, and named with why).
    pub fn pending(&self) -> Pending {
        let mut pending = Pending::default();
        for path in json_files(&self.dir) {
            let item = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Item>(&b).map_err(|e| e.to_string()));
            match item {
                Ok(item) => pending.items.push(item),
                Err(e) => pending.unreadable.push((path, e)),
            }
        }
        (pending.items).sort_by(|a, b| (&a.queued, &a.stem).cmp(&(&b.queued, &b.stem)));
        pending
    }

    /// How many were sent (the files in `sent/`).
    pub fn sent_count(&self) -> usize {
        json_files(&self.dir.join(SENT_DIR)).count()
    }
}

fn json_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (1..=7)
            .map(|n| backoff(n, s(10), s(300)).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX, s(10), s(300)), s(300));
    }

    #[test]
    fn an_item_is_queued_once_and_moves_to_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.enqueue("a-1234", Path::new("/in/a.dcm")).unwrap());
        assert!(!outbox.enqueue("a-1234", Path::new("/in/a.dcm")).unwrap());
        let mut items = outbox.pending().items;
        assert_eq!(items.len(), 1);
        items[0].confirmed.push("2.25.1".into());
        outbox.save(&items[0]).unwrap();
        assert_eq!(outbox.pending().items[0].confirmed, ["2.25.1"]);
        outbox.mark_sent(items.remove(0)).unwrap();
        assert!(outbox.pending().items.is_empty());
        assert_eq!(outbox.sent_count(), 1);
        // Graded again later (results cleared): not sent a second time.
        assert!(!outbox.enqueue("a-1234", Path::new("/in/a.dcm")).unwrap());
    }

    #[test]
    fn a_damaged_item_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let damaged = dir.path().join(OUTBOX_DIR).join("x.json");
        fs::write(&damaged, b"{not json").unwrap();
        outbox.enqueue("b-1", Path::new("/in/b.dcm")).unwrap();
        let pending = outbox.pending();
        assert_eq!(pending.items.len(), 1);
        assert_eq!(pending.unreadable[0].0, damaged);
        assert_eq!(fs::read(&damaged).unwrap(), b"{not json");
    }
}
