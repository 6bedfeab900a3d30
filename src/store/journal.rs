//! The journal `<results>/journal.jsonl`: one JSON line per input, appended and fsync'd, keyed by
//! the input's SHA-256, so a restart or a power cut neither repeats nor loses work; and the
//! `<results>/in-progress` note of the input being analysed, so one that the appliance keeps
//! dying on (a crash, memory running out) is set aside instead of tried for ever. The note keeps
//! the system's boot ID of every start: a stop that came with a reboot (a power cut, the
//! watchdog) is not held against the file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::Status;

/// The journal's file name inside the results folder.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// The name of the note of the input being analysed, inside the results folder.
const IN_PROGRESS_FILE: &str = "in-progress";
/// An input is not analysed again once the appliance has stopped this many times during its
/// analysis without the machine restarting (a crash, memory running out, a kill; two on the same
/// input are not a coincidence). Stops that came with a reboot are not counted.
pub const MAX_ATTEMPTS: u32 = 2;

/// Where Linux gives the ID of the current boot (a new random UUID at every boot).
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// Test seam: a file to read the boot ID from instead of `BOOT_ID`.
pub const BOOT_ID_FILE_ENV: &str = "KNEESCREEN_BOOT_ID_FILE";

/// The `in-progress` note: the inputs whose analysis started and never ended (the appliance
/// stopped during it), with how many times that happened, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct InProgress {
    inputs: Vec<Started>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Started {
    key: String,
    source: String,
    /// Analyses begun and not ended.
    attempts: u32,
    /// The boot ID at each of those beginnings ("" when unknown; missing in older notes).
    #[serde(default)]
    boots: Vec<String>,
}

impl Started {
    /// How many of the analyses before the last one ended in a stop that counts: the next start
    /// came in the same boot (or either boot is unknown, then every stop counts).
    fn counted_stops(&self) -> u32 {
        let attempts = self.attempts as usize;
        // Older notes have no boots: those starts count as unknown.
        let boot = |i: usize| {
            let missing = attempts.saturating_sub(self.boots.len());
            if i >= missing {
                self.boots[i - missing].as_str()
            } else {
                ""
            }
        };
        (1..attempts)
            .filter(|&i| {
                let (before, after) = (boot(i - 1), boot(i));
                before.is_empty() || after.is_empty() || before == after
            })
            .count() as u32
    }
}

/// The ID of the current boot ("" when it cannot be read).
fn boot_id() -> String {
    let path =
        std::env::var_os(BOOT_ID_FILE_ENV).map_or_else(|| PathBuf::from(BOOT_ID), PathBuf::from);
    fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// The note keeps at most this many inputs (older ones have long gone away).
const MAX_NOTED: usize = 64;

/// One journal line: `{"sha256","source","stem","status","time"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key: SHA-256 of the input's bytes, lowercase hex (for a file that could not be read,
    /// `unread-` and the SHA-256 of its path, size and modification time).
    pub sha256: String,
    /// Where the input was first found (its path, or a note such as an upload's name).
    pub source: String,
    /// Stem of its files in the results folder (`<stem>.json`, …).
    pub stem: String,
    pub status: Status,
    /// When it was done, in whole seconds since 1970-01-01 UTC (Unix time): no calendar code
    /// needed, and it sorts and compares as a number.
    pub time: u64,
}

impl Entry {
    /// An entry stamped with the current time.
    pub fn new(
        sha256: impl Into<String>,
        source: impl Into<String>,
        stem: impl Into<String>,
        status: Status,
    ) -> Entry {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Entry {
            sha256: sha256.into(),
            source: source.into(),
            stem: stem.into(),
            status,
            time,
        }
    }
}

/// The inputs done so far, in journal order, and the file new ones are appended to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
    by_hash: HashMap<String, usize>,
    /// A failed append may have left half a line: the next one must start on a fresh line.
    needs_newline: bool,
    /// What `<results>/in-progress` holds (read once, at open; written on every change).
    in_progress: InProgress,
    /// This boot's ID, read at open.
    boot: String,
}

impl Journal {
    /// Opens (or creates) `<dir>/journal.jsonl` and reads what it holds. A damaged line (the last
    /// one is torn if the power went while it was written) is skipped with a message on stderr:
    /// that input is simply done again.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let existed = path.try_exists()?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if !existed {
            // The new name must survive a power cut too, not only the lines written into it.
            File::open(dir)?.sync_all()?;
        }

        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let mut journal = Journal {
            path,
            file,
            entries: Vec::new(),
            by_hash: HashMap::new(),
            needs_newline: false,
            in_progress: fs::read(dir.join(IN_PROGRESS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            boot: boot_id(),
        };
        for (number, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => journal.remember(entry),
                Err(e) => eprintln!(
                    "kneescreen: {} line {} is incomplete or damaged (power cut while it was \
                     written?) and is ignored; that input will be analysed again ({e})",
                    journal.path.display(),
                    number + 1
                ),
            }
        }
        journal.needs_newline = !text.is_empty() && !text.ends_with(b"\n");
        Ok(journal)
    }

    /// The entry for an input's SHA-256, if it was done.
    pub fn get(&self, sha256: &str) -> Option<&Entry> {
        self.by_hash.get(sha256).map(|&i| &self.entries[i])
    }

    /// Appends one line and waits until it is on the disk.
    pub fn append(&mut self, entry: Entry) -> io::Result<()> {
        let mut line = Vec::with_capacity(160);
        if self.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, &entry).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write for the whole line: a crash tears at most this line, never an older one.
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            self.needs_newline = true;
            return written;
        }
        self.needs_newline = false;
        self.remember(entry);
        Ok(())
    }

    /// Notes that the input `key` is being analysed (until `end`), and returns how many earlier
    /// analyses of it ended in a stop that counts against it: the appliance stopped during them
    /// and started again without the machine restarting. Compare with `MAX_ATTEMPTS`. Other
    /// inputs analysed in between do not change that count.
    pub fn begin(&mut self, key: &str, source: &str) -> io::Result<u32> {
        let note = &mut self.in_progress;
        let mut started = match note.inputs.iter().position(|s| s.key == key) {
            Some(i) => note.inputs.remove(i),
            None => Started {
                key: key.to_string(),
                source: source.to_string(),
                attempts: 0,
                boots: Vec::new(),
            },
        };
        started.attempts += 1;
        started.boots.push(self.boot.clone());
        let counted = started.counted_stops();
        if started.attempts > 1 && counted < started.attempts - 1 {
            eprintln!(
                "kneescreen: {source}: an earlier analysis was cut by a restart of the machine \
                 (a power cut?): that stop is not held against the file"
            );
        }
        note.inputs.push(started);
        if note.inputs.len() > MAX_NOTED {
            note.inputs.remove(0);
        }
        self.save_in_progress()?;
        Ok(counted)
    }

    /// The analysis noted by `begin` has ended. `done`: its results are written and it is not
    /// analysed again, so it is forgotten; otherwise (it will be tried again) the note goes back
    /// to what `begin` found.
    pub fn end(&mut self, key: &str, done: bool) {
        let note = &mut self.in_progress;
        if let Some(i) = note.inputs.iter().position(|s| s.key == key) {
            if done || note.inputs[i].attempts <= 1 {
                note.inputs.remove(i);
            } else {
                note.inputs[i].attempts -= 1;
                note.inputs[i].boots.pop();
            }
        }
        if let Err(e) = self.save_in_progress() {
            eprintln!("kneescreen: cannot update the note of inputs in progress: {e}");
        }
    }

    fn save_in_progress(&self) -> io::Result<()> {
        let (path, note) = (
            self.path.with_file_name(IN_PROGRESS_FILE),
            &self.in_progress,
        );
        if note.inputs.is_empty() {
            return fs::remove_file(&path).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            });
        }
        let bytes = serde_json::to_vec_pretty(note).map_err(io::Error::other)?;
        crate::store::atomic::write_atomic(&path, &bytes)
    }

    /// Number of distinct inputs done.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The inputs done, oldest first (one per content hash).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remember(&mut self, entry: Entry) {
        match self.by_hash.get(&entry.sha256) {
            Some(&i) => self.entries[i] = entry,
            None => {
                self.by_hash
                    .insert(entry.sha256.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(attempts: u32, boots: &[&str]) -> Started {
        Started {
            key: "k".into(),
            source: "s".into(),
            attempts,
            boots: boots.iter().map(|b| b.to_string()).collect(),
        }
    }

    #[test]
    fn only_stops_without_a_reboot_count() {
        for (attempts, boots, counted) in [
            (1, &["a"][..], 0),
            (2, &["a", "a"], 1), // a crash: the next start came in the same boot
            (2, &["a", "b"], 0), // a power cut: the machine started again
            (3, &["a", "b", "b"], 1),
            (3, &["a", "a", "a"], 2),
            (3, &["a", "", "b"], 2), // an unknown boot counts, as before boot IDs were kept
            (3, &[], 2),             // a note written before boot IDs were kept
            (3, &["b"], 2),
            (3, &["a", "b"], 1),
        ] {
            assert_eq!(
                started(attempts, boots).counted_stops(),
                counted,
                "{attempts} {boots:?}"
            );
        }
    }
}
