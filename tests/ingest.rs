//! Ingest on temporary folders: the journal survives reopening and torn lines; the watcher finds
//! complete files once (at start, written slowly, renamed in, on a new stick) and leaves them as
//! they were.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use kneescreen::ingest::Watcher;
use kneescreen::record::Status;
use kneescreen::store::journal::{Entry, Journal, JOURNAL_FILE};
use kneescreen::store::results_dir::result_stem;

const SETTLE: Duration = Duration::from_millis(200);
/// Long enough for every file in a test to settle and be yielded; tests stop as soon as they can.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long "nothing more comes" is watched for: several settle times and (where shortened)
/// several periodic walks.
const QUIET: Duration = Duration::from_millis(900);

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("create folders");
    fs::write(path, bytes).expect("write file");
}

/// Calls `next` until `want` files came or `PATIENCE` ran out.
fn collect(watcher: &mut Watcher, want: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match watcher.next(left) {
            Some(path) => got.push(path),
            None => break,
        }
    }
    got.sort();
    got
}

fn assert_quiet(watcher: &mut Watcher) {
    let extra = watcher.next(QUIET);
    assert_eq!(extra, None, "nothing more should be yielded");
}

/// Every file under `dir` (links not followed) with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("list folder") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata().expect("metadata");
                let bytes = fs::read(entry.path()).expect("read");
                all.insert(entry.path(), (bytes, meta.modified().expect("mtime")));
            }
        }
    }
    all
}

fn entry(sha: &str, source: &str, status: Status) -> Entry {
    Entry::new(sha, source, result_stem(Path::new(source), sha), status)
}

#[test]
fn journal_appends_and_reopens() {
    let dir = temp();
    let results = dir.path().join("results");
    let mut journal = Journal::open(&results).expect("open");
    assert!(journal.is_empty());
    journal
        .append(entry("aa11", "/inbox/a.png", Status::Ok))
        .expect("append");
    journal
        .append(entry("bb22", "/media/stick/b.dcm", Status::Rejected))
        .expect("append");
    assert_eq!(journal.len(), 2);
    drop(journal);

    let journal = Journal::open(&results).expect("reopen");
    assert_eq!(journal.len(), 2);
    let a = journal.get("aa11").expect("a is remembered");
    assert_eq!((a.source.as_str(), a.status), ("/inbox/a.png", Status::Ok));
    assert_eq!(a.stem, "a-aa11");
    assert_eq!(journal.get("bb22").expect("b").status, Status::Rejected);
    assert!(journal.get("cc33").is_none());

    let text = fs::read_to_string(results.join(JOURNAL_FILE)).expect("journal text");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for key in ["sha256", "source", "stem", "status", "time"] {
        assert!(lines[0].get(key).is_some(), "journal lines have {key}");
    }
    assert_eq!(lines[1]["status"], "rejected");
    assert!(lines[0]["time"].as_u64().expect("unix seconds") > 1_700_000_000);
}

#[test]
fn journal_ignores_a_torn_last_line_and_appends_on_a_new_line() {
    let dir = temp();
    let good = serde_json::to_string(&entry("aa11", "/inbox/a.png", Status::Ok)).expect("json");
    // A damaged line in the middle and a line torn by a power cut at the end.
    let text = format!("{good}\nnot json at all\n{{\"sha256\":\"bb22\",\"sour");
    fs::write(dir.path().join(JOURNAL_FILE), text).expect("write journal");

    let mut journal = Journal::open(dir.path()).expect("open despite the torn line");
    assert_eq!(journal.len(), 1);
    assert!(journal.get("aa11").is_some());
    assert!(
        journal.get("bb22").is_none(),
        "the torn input is done again"
    );
    journal
        .append(entry("bb22", "/inbox/b.png", Status::Ok))
        .expect("append");
    drop(journal);

    let journal = Journal::open(dir.path()).expect("reopen");
    assert_eq!(journal.len(), 2);
    assert_eq!(journal.get("bb22").expect("b").source, "/inbox/b.png");
    let text = fs::read_to_string(dir.path().join(JOURNAL_FILE)).expect("journal text");
    assert!(text.ends_with('\n'));
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a last line")).expect("whole line");
    assert_eq!(last["sha256"], "bb22");
}

#[test]
fn journal_is_keyed_by_content_not_name() {
    let dir = temp();
    let mut journal = Journal::open(dir.path()).expect("open");
    journal
        .append(entry("aa11", "/inbox/knee.png", Status::Ok))
        .expect("append");
    // The same bytes on a stick under another name: found by hash, so not done again.
    let seen = journal.get("aa11").expect("known content");
    assert_eq!(seen.source, "/inbox/knee.png");
    assert_eq!(journal.iter().count(), 1);
}

#[test]
fn result_stems_are_safe_readable_and_unique() {
    let sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(
        result_stem(Path::new("/in/Knee X-ray (left).PNG"), sha),
        "Knee_X-ray_left-01234567"
    );
    assert_eq!(
        result_stem(Path::new("/in/.hidden.png"), sha),
        "hidden-01234567"
    );
    assert_eq!(
        result_stem(Path::new("/in/Müller ÄÖ.jpg"), sha),
        "M_ller-01234567"
    );
    assert_eq!(result_stem(Path::new("/in/---.png"), sha), "input-01234567");
    assert_eq!(result_stem(Path::new("/"), sha), "input-01234567");
    let long = format!("/in/{}.dcm", "x".repeat(300));
    let stem = result_stem(Path::new(&long), sha);
    assert!(stem.len() <= 80 && stem.ends_with("-01234567"), "{stem}");
    for stem in [stem, result_stem(Path::new("../../etc/passwd"), "ABCDEF12")] {
        assert!(
            stem.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{stem}"
        );
        assert!(!stem.starts_with('.'));
    }
    assert_ne!(
        result_stem(Path::new("a.png"), sha),
        result_stem(Path::new("a.png"), "fedcba9876543210"),
        "same name, other content: other stem"
    );
}

#[test]
fn watcher_is_send() {
    fn check<T: Send>() {}
    check::<Watcher>();
}

#[test]
fn files_present_at_start_are_found_in_nested_folders_and_left_untouched() {
    let dir = temp();
    let inbox = dir.path().join("inbox");
    write(&inbox.join("a.png"), b"first");
    write(&inbox.join("study/series/deep/b.dcm"), b"second");
    // Not inputs: hidden, temporary and system names.
    for skip in [
        ".hidden.png",
        "c.part",
        "d.TMP",
        "e.png~",
        "f.crdownload",
        ".Trash-1000/g.png",
    ] {
        write(&inbox.join(skip), b"skip me");
    }
    write(
        &inbox.join("System Volume Information/IndexerVolumeGuid"),
        b"skip me",
    );
    // Symbolic links to folders (here: loops) are not followed; a link to a file in the inbox
    // is an input, one leading out of it (to a configuration file, say) is not.
    write(&dir.path().join("outside.png"), b"linked");
    symlink(&inbox, inbox.join("loop")).expect("symlink");
    symlink("..", inbox.join("study/up")).expect("symlink");
    symlink("study/series/deep/b.dcm", inbox.join("link.png")).expect("symlink");
    symlink(dir.path().join("outside.png"), inbox.join("out.png")).expect("symlink");
    symlink("/etc/hostname", inbox.join("hostname.png")).expect("symlink");
    let before = snapshot(dir.path());

    let mut watcher = Watcher::new(vec![inbox.clone()], None, SETTLE);
    let got = collect(&mut watcher, 3);
    assert_eq!(
        got,
        vec![
            inbox.join("a.png"),
            inbox.join("link.png"),
            inbox.join("study/series/deep/b.dcm")
        ]
    );
    assert_quiet(&mut watcher);
    assert_eq!(watcher.pending(), 0);
    assert_eq!(watcher.last_error(), None);
    assert_eq!(
        snapshot(dir.path()),
        before,
        "inputs are byte-identical afterwards"
    );
}

#[test]
fn a_slowly_written_file_is_yielded_once_when_complete() {
    let dir = temp();
    let inbox = dir.path().join("inbox");
    let mut watcher = Watcher::new(vec![inbox.clone()], None, Duration::from_millis(500));
    let path = inbox.join("slow.png");
    let chunk = vec![7u8; 64 * 1024];
    let writer = thread::spawn({
        let path = path.clone();
        move || {
            let mut file = File::create(&path).expect("create");
            for i in 0..3 {
                if i > 0 {
                    thread::sleep(Duration::from_millis(300));
                }
                file.write_all(&chunk).expect("write chunk");
                file.flush().expect("flush");
            }
        }
    });

    let got = watcher.next(PATIENCE);
    let size_when_yielded = fs::metadata(&path).expect("metadata").len();
    writer.join().expect("writer");
    assert_eq!(got, Some(path.clone()));
    assert_eq!(
        size_when_yielded,
        3 * 64 * 1024,
        "yielded only once complete"
    );
    assert_quiet(&mut watcher);
}

#[test]
fn a_file_renamed_into_place_is_yielded_at_once_but_never_its_temporary_name() {
    let dir = temp();
    let inbox = dir.path().join("inbox");
    // A settle time this long means only the rename itself can make the file count as complete.
    let mut watcher = Watcher::new(vec![inbox.clone()], None, Duration::from_secs(30));
    write(&inbox.join("scan.png.part"), b"scan bytes");
    write(&inbox.join(".scan2.png"), b"hidden");
    fs::rename(inbox.join("scan.png.part"), inbox.join("scan.png")).expect("rename");
    assert_eq!(watcher.next(PATIENCE), Some(inbox.join("scan.png")));
    assert_eq!(watcher.next(Duration::from_millis(500)), None);
    assert_eq!(
        fs::read(inbox.join("scan.png")).expect("read"),
        b"scan bytes"
    );
}

#[test]
fn a_folder_appearing_under_the_usb_parent_is_searched() {
    let dir = temp();
    let media = dir.path().join("media");
    fs::create_dir_all(&media).expect("media");
    let mut watcher = Watcher::new(vec![dir.path().join("inbox")], Some(media.clone()), SETTLE);
    assert!(watcher
        .watched()
        .iter()
        .any(|w| w.contains("media") && w.contains("USB")));
    assert_eq!(watcher.next(Duration::from_millis(300)), None);

    // A stick appears: its folder, then its files, nested.
    let stick = media.join("pi/STICK");
    write(&stick.join("knee.png"), b"one");
    write(&stick.join("DICOM/PA0/ST0/IM0"), b"two");
    // Another appears whole, with its files already on it.
    let staging = dir.path().join("staging");
    write(&staging.join("OTHER/x/knee2.jpg"), b"three");
    fs::rename(staging.join("OTHER"), media.join("OTHER")).expect("move in");

    let got = collect(&mut watcher, 3);
    assert_eq!(
        got,
        vec![
            media.join("OTHER/x/knee2.jpg"),
            stick.join("DICOM/PA0/ST0/IM0"),
            stick.join("knee.png"),
        ]
    );
    assert_quiet(&mut watcher);
}

#[test]
fn a_removed_subfolder_is_dropped_quietly_and_picked_up_when_back() {
    let dir = temp();
    let inbox = dir.path().join("inbox");
    let sub = inbox.join("stick");
    write(&sub.join("a.png"), b"a");
    let mut watcher = Watcher::new(vec![inbox.clone()], None, SETTLE)
        .with_poll_interval(Duration::from_millis(300));
    assert_eq!(collect(&mut watcher, 1), vec![sub.join("a.png")]);

    // Pulled, including a file still settling.
    write(&sub.join("half.png"), b"half");
    fs::remove_dir_all(&sub).expect("remove");
    assert_eq!(watcher.next(QUIET), None);
    assert_eq!(watcher.pending(), 0);
    assert_eq!(
        watcher.last_error(),
        None,
        "a vanished sub-folder is not an error"
    );

    // Back, with a new file and the old name rewritten.
    write(&sub.join("b.png"), b"b");
    write(&sub.join("a.png"), b"a2");
    assert_eq!(
        collect(&mut watcher, 2),
        vec![sub.join("a.png"), sub.join("b.png")]
    );
    assert_quiet(&mut watcher);
}

#[test]
fn the_same_file_is_not_yielded_twice_but_a_changed_one_is() {
    let dir = temp();
    let inbox = dir.path().join("inbox");
    write(&inbox.join("a.png"), b"a");
    // Short walks: several happen while we watch for repeats.
    let mut watcher = Watcher::new(vec![inbox.clone()], None, SETTLE)
        .with_poll_interval(Duration::from_millis(150));
    assert_eq!(collect(&mut watcher, 1), vec![inbox.join("a.png")]);
    assert_quiet(&mut watcher);

    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(inbox.join("a.png"))
        .expect("open");
    file.write_all(b" more").expect("append");
    drop(file);
    assert_eq!(collect(&mut watcher, 1), vec![inbox.join("a.png")]);
    assert_quiet(&mut watcher);
}

#[test]
fn missing_inboxes_are_created_and_a_vanished_inbox_comes_back() {
    let dir = temp();
    let inbox = dir.path().join("deep/scanner/out");
    let mut watcher = Watcher::new(vec![inbox.clone()], None, SETTLE)
        .with_poll_interval(Duration::from_millis(200));
    assert!(inbox.is_dir(), "the inbox is created");
    assert_eq!(watcher.watched(), vec![inbox.display().to_string()]);

    fs::remove_dir_all(&inbox).expect("remove inbox");
    assert_eq!(watcher.next(Duration::from_millis(600)), None);
    let error = watcher.last_error().expect("a vanished inbox is reported");
    assert!(
        error.contains("disappeared") && error.contains("out"),
        "{error}"
    );
    assert!(watcher.watched()[0].ends_with("(missing)"));

    // Still missing at the next walks: still reported.
    assert_eq!(watcher.next(Duration::from_millis(600)), None);
    assert_eq!(watcher.last_error(), Some(error));

    write(&inbox.join("back.png"), b"back");
    assert_eq!(collect(&mut watcher, 1), vec![inbox.join("back.png")]);
    assert_eq!(watcher.watched(), vec![inbox.display().to_string()]);
    assert_eq!(watcher.last_error(), None, "the problem has cleared");
}
