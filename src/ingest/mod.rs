//! Inputs: finds complete image files in the inbox folders and on USB sticks (`Watcher`), and
//! remembers by content hash which inputs were already done (`Journal`). Inputs are only ever read.

mod journal;
mod watch;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub use journal::{Entry, Journal, JOURNAL_FILE, MAX_ATTEMPTS};
pub use watch::{Watcher, POLL_INTERVAL};

/// Something went wrong while looking for inputs. The watcher keeps running; the newest message
/// is shown on the status view (`Watcher::last_error`).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The appliance's user may not list this folder: fix its permissions, or the automount
    /// options of the USB stick (`uid=`/`umask=`).
    #[error("permission denied on folder {0}: the appliance may not read it")]
    PermissionDenied(PathBuf),
    /// An inbox folder was removed, or the disk or share it lives on went away. It is picked up
    /// again as soon as it is back.
    #[error("inbox folder {0} has disappeared; waiting for it to come back")]
    FolderVanished(PathBuf),
    /// An inbox folder did not exist and could not be made (read-only disk, missing permission
    /// on its parent): create it by hand or change the configured inbox.
    #[error("could not create inbox folder {path}: {source}")]
    CreateInbox {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading a folder failed (often a USB stick pulled while it was being read).
    #[error("could not read folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The system would not report changes in this folder (usually its limit on watched folders,
    /// `fs.inotify.max_user_watches`). New files are still found by the periodic check.
    #[error("cannot watch folder {path} for new files ({reason}); it is still checked every few seconds")]
    Watch { path: PathBuf, reason: String },
    /// The system gives no file-change events at all (inotify missing or out of instances).
    #[error("no file-change events from the system ({0}); folders are checked every few seconds instead")]
    NoEvents(String),
}

impl IngestError {
    pub(crate) fn from_io(path: &Path, source: std::io::Error) -> IngestError {
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => IngestError::PermissionDenied(path.into()),
            _ => IngestError::Io {
                path: path.into(),
                source,
            },
        }
    }
}

/// Longest result stem, so `<stem>.overlay.png` stays well inside every filesystem's name limit.
const MAX_STEM: usize = 80;

/// A safe, readable and unique file stem for an input's results: `<sanitised name>-<first 8 hex
/// digits of its SHA-256>`. ASCII letters, digits, `-` and `_` only, no leading dot, ≤ 80 chars.
/// The same bytes under the same name always give the same stem, so redoing an input overwrites
/// its own results instead of adding new ones.
pub fn result_stem(path: &Path, sha256: &str) -> String {
    let hash: String = sha256
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let hash = if hash.is_empty() {
        "00000000".to_string()
    } else {
        hash
    };

    let raw = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    let trim = |c: char| c == '_' || c == '-';
    let mut name = name.trim_matches(trim).to_string();
    // `name` is ASCII, so cutting at any byte index is cutting at a character boundary.
    name.truncate(MAX_STEM - 1 - hash.len());
    let name = name.trim_end_matches(trim);
    let name = if name.is_empty() { "input" } else { name };
    format!("{name}-{hash}")
}

/// Folders that operating systems put on sticks; never inputs.
const SYSTEM_FOLDERS: [&str; 3] = ["System Volume Information", "$RECYCLE.BIN", "lost+found"];

/// Hidden folders (`.Trash-1000`, `.Spotlight-V100`, …) and system folders are not searched.
pub(crate) fn is_ignored_folder(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || SYSTEM_FOLDERS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// Hidden files (including macOS `._` companions) and the names copy tools and browsers give a
/// file while it is still being written.
pub(crate) fn is_ignored_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_lowercase();
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".crdownload"]
            .iter()
            .any(|s| name.ends_with(s))
}
