//! Finding complete input files: every inbox folder and the USB mount parent is walked at start,
//! watched for changes (inotify through `notify`) and walked again every few seconds.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::rules::{is_ignored_file, is_ignored_folder, IngestError};

/// How often every folder is walked again. Walking compares (path, size, mtime) only, so it costs
/// one `stat` per file; 2 s keeps a stick's files appearing promptly without using the CPU.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Sticks and scanners nest a handful of levels (DICOM: patient/study/series/image). Anything far
/// deeper is a mistake or a loop through bind mounts, not input.
const MAX_DEPTH: usize = 32;

/// The version of a file that counts for "seen before": its size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    size: u64,
    mtime: Option<SystemTime>,
}

impl Version {
    fn of(meta: &Metadata) -> Version {
        Version {
            size: meta.len(),
            mtime: meta.modified().ok(),
        }
    }
}

/// A file seen but not yet known to be complete.
#[derive(Debug)]
struct Pending {
    version: Version,
    /// When this version was first seen: it is complete once unchanged for the settle time.
    since: Instant,
}

/// A configured folder to search.
#[derive(Debug)]
struct Root {
    path: PathBuf,
    inbox: bool,
    present: bool,
    /// Found at least once: a missing inbox that never existed is created, one that vanished
    /// (an unmounted disk) is waited for, so nothing is written where the disk used to be.
    seen: bool,
}

/// Watches inbox folders and a USB mount parent and yields each complete file once.
/// It only ever reads: inputs are never opened for writing, moved or deleted.
///
/// Why both events and walks: a watch made before a stick is mounted sees nothing inside the
/// mount, unmounting sends no event, files already on a stick send none, and network shares may
/// send none at all. The periodic walk catches all of these; the events make the common case (a
/// scanner writing into its folder) immediate. Each folder gets its own non-recursive watch,
/// added by the walk itself, so that hidden folders are never watched, symbolic links are never
/// followed, a mount point is watched again when a stick appears on it (its device changes), and
/// one unreadable folder does not stop the others from being watched.
pub struct Watcher {
    roots: Vec<Root>,
    settle: Duration,
    poll_interval: Duration,
    /// `None` when the system gives no change events: then only the periodic walk finds files.
    notify: Option<RecommendedWatcher>,
    events: Receiver<notify::Result<Event>>,
    /// Keeps the channel open without `notify`, so waiting on it still works as a sleep.
    _events_tx: Sender<notify::Result<Event>>,
    /// Folders watched, with the (device, inode) they had: a different one means the folder was
    /// re-created or a stick was mounted on it, and needs a new watch.
    folders: HashMap<PathBuf, (u64, u64)>,
    /// Folders on another filesystem than their parent: mounted sticks (for the status view).
    mounts: BTreeSet<PathBuf>,
    pending: HashMap<PathBuf, Pending>,
    /// Complete files in the order found, and the version each was complete at.
    ready: VecDeque<PathBuf>,
    ready_versions: HashMap<PathBuf, Version>,
    yielded: HashMap<PathBuf, Version>,
    next_walk: Instant,
    /// Why the system gives no change events, when it gives none.
    no_events: Option<String>,
    /// Folders whose watch failed, and why (tried and reported again on every walk).
    unwatched: HashMap<PathBuf, String>,
    /// Problems reported since the last walk began: the conditions that still stand. A message
    /// is printed when it starts to stand, and the status view's error clears when none does.
    standing: HashSet<String>,
    printed: HashSet<String>,
    last_error: Option<String>,
}

impl Watcher {
    /// Starts watching: creates missing inboxes, walks every folder and watches it. `usb_parent`
    /// (e.g. `/media`) is where sticks get mounted, at any depth; it is not created. A file counts
    /// as complete when it is closed after writing, renamed into place, or unchanged in size and
    /// modification time for `settle`. Problems are reported through `last_error`.
    pub fn new(inboxes: Vec<PathBuf>, usb_parent: Option<PathBuf>, settle: Duration) -> Watcher {
        // A settle time of zero would re-check a file that is being written in a tight loop.
        let settle = settle.max(Duration::from_millis(10));
        let (tx, events) = mpsc::channel();
        let config = notify::Config::default().with_follow_symlinks(false);
        let (notify, no_events) = match RecommendedWatcher::new(tx.clone(), config) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut watcher = Watcher {
            roots: Vec::new(),
            settle,
            poll_interval: POLL_INTERVAL,
            notify,
            events,
            _events_tx: tx,
            folders: HashMap::new(),
            mounts: BTreeSet::new(),
            pending: HashMap::new(),
            ready: VecDeque::new(),
            ready_versions: HashMap::new(),
            yielded: HashMap::new(),
            next_walk: Instant::now(),
            no_events,
            unwatched: HashMap::new(),
            standing: HashSet::new(),
            printed: HashSet::new(),
            last_error: None,
        };
        let inboxes = inboxes.into_iter().map(|p| (p, true));
        for (path, inbox) in inboxes.chain(usb_parent.map(|p| (p, false))) {
            watcher.roots.push(Root {
                // Events carry absolute paths; roots must match them.
                path: std::path::absolute(&path).unwrap_or(path),
                inbox,
                present: false,
                seen: false,
            });
        }
        watcher.walk_all();
        watcher
    }

    /// Changes how often every folder is walked again (default `POLL_INTERVAL`).
    pub fn with_poll_interval(mut self, interval: Duration) -> Watcher {
        self.poll_interval = interval;
        self.next_walk = Instant::now() + interval;
        self
    }

    /// The next complete file, waiting up to `timeout` for one. Each (path, size, mtime) is
    /// yielded at most once. Waiting blocks on the event channel: no CPU is used while idle.
    pub fn next(&mut self, timeout: Duration) -> Option<PathBuf> {
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or(start + Duration::from_secs(86_400));
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.handle(event);
            }
            if Instant::now() >= self.next_walk {
                self.walk_all();
            }
            self.settle_pending();
            if let Some(path) = self.pop_ready() {
                return Some(path);
            }

            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let settled = self.pending.values().map(|p| p.since + self.settle).min();
            let wake = settled
                .into_iter()
                .fold(deadline.min(self.next_walk), Instant::min);
            match self
                .events
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    /// The folders being searched, for the status view: each inbox and the USB parent (marked
    /// when missing), then every mounted stick found under them.
    pub fn watched(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .roots
            .iter()
            .map(|r| {
                let kind = if r.inbox { "" } else { " (USB)" };
                let missing = if r.present { "" } else { " (missing)" };
                format!("{}{kind}{missing}", r.path.display())
            })
            .collect();
        list.extend(
            self.mounts
                .iter()
                .map(|m| format!("{} (mounted)", m.display())),
        );
        list
    }

    /// Files seen but not yet yielded (still being written, or waiting to settle).
    pub fn pending(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// The newest problem that still stands (found by the latest walk, or by a file-change event
    /// since), as a message for the technician; `None` once every problem has cleared.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }

    /// Walks every configured folder: finds new and changed files, new sticks and folders that
    /// came back, and forgets folders that are gone.
    fn walk_all(&mut self) {
        self.standing.clear();
        if let Some(reason) = self.no_events.clone() {
            self.report(IngestError::NoEvents(reason));
        }
        let mut found = HashSet::new();
        let mut mounts = BTreeSet::new();
        for i in 0..self.roots.len() {
            let path = self.roots[i].path.clone();
            let is_dir = || fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
            let mut present = is_dir();
            if !present && self.roots[i].inbox {
                if self.roots[i].seen {
                    self.report(IngestError::FolderVanished(path.clone()));
                } else if let Err(source) = fs::create_dir_all(&path) {
                    self.report(IngestError::CreateInbox {
                        path: path.clone(),
                        source,
                    });
                } else {
                    present = is_dir();
                }
            }
            self.roots[i].present = present;
            self.roots[i].seen |= present;
            if present {
                self.walk(&path, &mut found, &mut mounts);
            }
        }
        // Folders not found again are gone (stick pulled): their watches died with them.
        let gone: Vec<PathBuf> = self
            .folders
            .keys()
            .filter(|p| !found.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.folders.remove(&path);
            self.unwatched.remove(&path);
            // Its files are forgotten too: if they come back, the journal knows them by content.
            self.yielded
                .retain(|p, _| p.parent() != Some(path.as_path()));
            if let Some(w) = self.notify.as_mut() {
                let _ = w.unwatch(&path);
            }
        }
        self.mounts = mounts;
        // A problem not met again has cleared: print it again if it comes back.
        self.printed.retain(|m| self.standing.contains(m));
        if self.standing.is_empty() {
            self.last_error = None;
        }
        self.next_walk = Instant::now() + self.poll_interval;
    }

    /// Walks one folder tree (not following symbolic links), watching each folder before listing
    /// it so that nothing created in between is missed.
    fn walk(&mut self, top: &Path, found: &mut HashSet<PathBuf>, mounts: &mut BTreeSet<PathBuf>) {
        let root = self.root_of(top).unwrap_or(top).to_path_buf();
        let mut stack = vec![(top.to_path_buf(), 0, None)];
        while let Some((dir, depth, parent_dev)) = stack.pop() {
            let meta = match fs::metadata(&dir) {
                Ok(m) => m,
                Err(e) => {
                    self.report_folder_error(&dir, e);
                    continue;
                }
            };
            if !meta.is_dir() {
                continue;
            }
            let id = (meta.dev(), meta.ino());
            if parent_dev.is_some_and(|d| d != id.0) {
                mounts.insert(dir.clone());
            }
            self.ensure_watched(&dir, id);
            found.insert(dir.clone());
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    self.report_folder_error(&dir, e);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        self.report_folder_error(&dir, e);
                        break;
                    }
                };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let name = entry.file_name();
                if kind.is_dir() {
                    if !is_ignored_folder(&name) && depth < MAX_DEPTH {
                        stack.push((entry.path(), depth + 1, Some(id.0)));
                    }
                } else if (kind.is_file() || kind.is_symlink()) && !is_ignored_file(&name) {
                    // `metadata` follows a link: a link to a file under the same root is an
                    // input, one to a folder is skipped (links can form loops).
                    let path = entry.path();
                    if kind.is_symlink() && !links_within(&path, &root) {
                        continue;
                    }
                    if let Ok(meta) = fs::metadata(&path) {
                        if meta.is_file() {
                            self.observe(path, Version::of(&meta));
                        }
                    }
                }
            }
        }
    }

    /// Watches `dir` unless it already is; a watch that failed is tried again on every walk (the
    /// limit may have been raised since).
    fn ensure_watched(&mut self, dir: &Path, id: (u64, u64)) {
        if self.folders.get(dir) == Some(&id) && !self.unwatched.contains_key(dir) {
            return;
        }
        self.folders.insert(dir.to_path_buf(), id);
        self.unwatched.remove(dir);
        if let Some(w) = self.notify.as_mut() {
            let error = match w.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => return,
                Err(e) => e,
            };
            let reason = match error.kind {
                // Gone again already: the walk notices, nothing to report.
                notify::ErrorKind::PathNotFound => return,
                notify::ErrorKind::Io(ref e) if e.kind() == std::io::ErrorKind::NotFound => return,
                notify::ErrorKind::Io(ref e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    return self.report(IngestError::PermissionDenied(dir.to_path_buf()));
                }
                notify::ErrorKind::MaxFilesWatch => {
                    "the limit on watched folders is reached: raise fs.inotify.max_user_watches"
                        .to_string()
                }
                _ => error.to_string(),
            };
            self.unwatched.insert(dir.to_path_buf(), reason.clone());
            self.report(IngestError::Watch {
                path: dir.to_path_buf(),
                reason,
            });
        }
    }

    fn handle(&mut self, event: notify::Result<Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let path = e.paths.first().cloned().unwrap_or_default();
                self.report(IngestError::Watch {
                    path,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if event.need_rescan() {
            // The kernel dropped events: walk everything now.
            self.next_walk = Instant::now();
        }
        let paths = event.paths;
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                paths.into_iter().for_each(|p| self.complete(p));
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                let mut paths = paths.into_iter();
                if let Some(from) = paths.next() {
                    self.forget(&from);
                }
                paths.for_each(|p| self.complete(p));
            }
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                paths.iter().for_each(|p| self.forget(p));
            }
            EventKind::Create(_) | EventKind::Modify(_) => {
                paths.into_iter().for_each(|p| self.touched(p));
            }
            // Opens and reads (ours included) say nothing about completeness.
            _ => {}
        }
    }

    /// The writer closed the file, or it was renamed into place: it is complete now.
    fn complete(&mut self, path: PathBuf) {
        let Ok(meta) = self.visible_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            // A folder moved in whole (or a stick's folder appearing): search it.
            self.walk_new(&path);
        } else if meta.is_file() {
            let version = Version::of(&meta);
            // An empty file is often created first and filled later: let it settle instead.
            if version.size == 0 {
                self.observe(path, version);
            } else {
                self.pending.remove(&path);
                self.push_ready(path, version);
            }
        }
    }

    /// A file or folder was created or changed.
    fn touched(&mut self, path: PathBuf) {
        let Ok(meta) = self.visible_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            self.walk_new(&path);
        } else if meta.is_file() {
            self.observe(path, Version::of(&meta));
        }
    }

    /// Searches a folder that just appeared; files created in it before its watch was in place
    /// sent no events.
    fn walk_new(&mut self, dir: &Path) {
        if self.folders.contains_key(dir) {
            return;
        }
        let (mut found, mut mounts) = (HashSet::new(), BTreeSet::new());
        self.walk(dir, &mut found, &mut mounts);
        self.mounts.extend(mounts);
    }

    /// The configured folder (inbox or USB mount parent) that `path` lies in.
    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .map(|r| r.path.as_path())
            .find(|r| path.starts_with(r))
    }

    /// Metadata of an event's path, unless it lies outside the roots or is hidden or temporary.
    fn visible_metadata(&self, path: &Path) -> std::io::Result<Metadata> {
        let hidden = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let root = self.root_of(path).ok_or_else(hidden)?;
        let rel = path.strip_prefix(root).map_err(|_| hidden())?;
        let mut parts: Vec<_> = rel.iter().collect();
        let last = parts.pop().ok_or_else(hidden)?;
        if parts.iter().any(|p| is_ignored_folder(p)) || parts.len() >= MAX_DEPTH {
            return Err(hidden());
        }
        // Links to folders are not followed (loops); links to files under the same root are inputs.
        let link = fs::symlink_metadata(path)?;
        let is_link = link.file_type().is_symlink();
        if is_link && !links_within(path, root) {
            return Err(hidden());
        }
        let meta = if is_link { fs::metadata(path)? } else { link };
        let ignored = if meta.is_dir() {
            is_link || is_ignored_folder(last)
        } else {
            is_ignored_file(last)
        };
        if ignored {
            return Err(hidden());
        }
        Ok(meta)
    }

    /// Notes a file's current version: new or changed versions wait for the settle time.
    fn observe(&mut self, path: PathBuf, version: Version) {
        if self.yielded.get(&path) == Some(&version) || self.ready_versions.contains_key(&path) {
            return;
        }
        if self.pending.get(&path).is_none_or(|p| p.version != version) {
            let since = Instant::now();
            self.pending.insert(path, Pending { version, since });
        }
    }

    /// A file or folder went away (deleted, renamed away, stick pulled): drop what was pending
    /// under it, and its watches (a folder re-created there may reuse the inode number).
    fn forget(&mut self, path: &Path) {
        self.pending.retain(|p, _| !p.starts_with(path));
        self.ready.retain(|p| !p.starts_with(path));
        self.ready_versions.retain(|p, _| !p.starts_with(path));
        self.folders.retain(|p, _| !p.starts_with(path));
        self.unwatched.retain(|p, _| !p.starts_with(path));
        self.yielded.retain(|p, _| !p.starts_with(path));
    }

    /// Moves files unchanged for the settle time to the ready queue.
    fn settle_pending(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.since + self.settle)
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            let current = fs::metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| Version::of(&m));
            let Some(pending) = self.pending.get_mut(&path) else {
                continue;
            };
            match current {
                Some(version) if version == pending.version => {
                    self.pending.remove(&path);
                    self.push_ready(path, version);
                }
                Some(version) => {
                    pending.version = version;
                    pending.since = now;
                }
                // Gone before it settled (renamed away, stick pulled).
                None => {
                    self.pending.remove(&path);
                }
            }
        }
    }

    fn push_ready(&mut self, path: PathBuf, version: Version) {
        if self.yielded.get(&path) != Some(&version) && !self.ready_versions.contains_key(&path) {
            self.ready_versions.insert(path.clone(), version);
            self.ready.push_back(path);
        }
    }

    /// The next ready file that is still there, unchanged, and not yielded before.
    fn pop_ready(&mut self) -> Option<PathBuf> {
        while let Some(path) = self.ready.pop_front() {
            let Some(version) = self.ready_versions.remove(&path) else {
                continue;
            };
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let current = Version::of(&meta);
            if current != version {
                // Written to again since it looked complete: wait for it to settle.
                self.observe(path, current);
                continue;
            }
            if self.yielded.get(&path) == Some(&version) {
                continue;
            }
            self.yielded.insert(path.clone(), version);
            return Some(path);
        }
        None
    }

    fn report_folder_error(&mut self, dir: &Path, e: std::io::Error) {
        // A folder that vanished while being read is a pulled stick or a deleted folder: normal.
        if e.kind() != std::io::ErrorKind::NotFound {
            self.report(IngestError::from_io(dir, e));
        }
    }

    /// Keeps the newest problem for the status view; prints it when it starts to stand.
    fn report(&mut self, error: IngestError) {
        let message = error.to_string();
        if self.printed.insert(message.clone()) {
            eprintln!("kneescreen: {message}");
        }
        self.standing.insert(message.clone());
        self.last_error = Some(message);
    }
}

/// Whether the symbolic link `link` leads to a place under `root`: a link out of the inbox or off
/// the stick (to a configuration file, say) is not an input, or its hash and first bytes would
/// end up in a result record.
fn links_within(link: &Path, root: &Path) -> bool {
    match (fs::canonicalize(link), fs::canonicalize(root)) {
        (Ok(target), Ok(root)) => target.starts_with(root),
        _ => false,
    }
}
