//! Which files and folders count as inputs, and what can go wrong while looking for them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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
    pub fn from_io(path: &Path, source: std::io::Error) -> IngestError {
        match source.kind() {
            std::io::ErrorKind::PermissionDenied => IngestError::PermissionDenied(path.into()),
            _ => IngestError::Io {
                path: path.into(),
                source,
            },
        }
    }
}

/// Folders that operating systems put on sticks; never inputs.
const SYSTEM_FOLDERS: [&str; 3] = ["System Volume Information", "$RECYCLE.BIN", "lost+found"];

/// Hidden folders (`.Trash-1000`, `.Spotlight-V100`, …) and system folders are not searched.
pub fn is_ignored_folder(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') || SYSTEM_FOLDERS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// Hidden files (including macOS `._` companions) and the names copy tools and browsers give a
/// file while it is still being written.
pub fn is_ignored_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_lowercase();
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".crdownload"]
            .iter()
            .any(|s| name.ends_with(s))
}
