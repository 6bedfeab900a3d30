//! `kneescreen run` on temporary folders: every input gets exactly one record, inputs stay
//! byte-identical, nothing is processed twice across restarts, and the appliance survives slow
//! writers, bad files and a USB stick that is pulled.

use crate::support::dicom_writer;
use crate::support::http_client;
use crate::support::util::{self, synthetic_bilateral, write_png};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use http_client::{get, upload};
use serde_json::Value;
use std::net::SocketAddr;
use util::*;

struct Setup {
    _tmp: tempfile::TempDir,
    inbox: PathBuf,
    usb: PathBuf,
    results: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let tmp = temp_dir();
    let (inbox, usb, results) = (
        tmp.path().join("inbox"),
        tmp.path().join("media"),
        tmp.path().join("results"),
    );
    fs::create_dir_all(&inbox).unwrap();
    fs::create_dir_all(&usb).unwrap();
    let config = tmp.path().join("kneescreen.toml");
    fs::write(
        &config,
        format!(
            "inboxes = [{:?}]\nusb_mount_parent = {:?}\nresults = {:?}\nsettle_ms = 300\n[web]\nlisten = \"127.0.0.1:0\"\n",
            inbox, usb, results
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        inbox,
        usb,
        results,
        config,
    }
}

fn run_args(s: &Setup) -> Vec<String> {
    vec![
        "run".into(),
        "--config".into(),
        s.config.display().to_string(),
        "--panel".into(),
        "virtual".into(),
    ]
}

fn run_until_idle(s: &Setup) {
    let mut args = run_args(s);
    args.push("--exit-when-idle".into());
    let out = kneescreen().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

fn spawn(s: &Setup) -> Child {
    kneescreen()
        .args(run_args(s))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Records in the results folder, by the file they came from.
fn records(results: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut by_file: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in fs::read_dir(results).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "json") {
            let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            by_file
                .entry(v["file"].as_str().unwrap().to_string())
                .or_default()
                .push(v);
        }
    }
    by_file
}

fn journal_lines(results: &Path) -> usize {
    fs::read_to_string(results.join("journal.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn png_bytes(seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    synthetic_knee(260, 250, seed)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn every_input_gets_exactly_one_record_and_stays_untouched() {
    let s = setup();
    let nested = s.inbox.join("scanner/2026-11-27");
    fs::create_dir_all(&nested).unwrap();
    let good = png_bytes(1);
    let mut huge = good[..33].to_vec();
    huge[16..24].copy_from_slice(&[0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60]); // 60000×60000
    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        (s.inbox.join("good.png"), good.clone()),
        (nested.join("also good, no extension"), png_bytes(2)),
        (s.inbox.join("empty.png"), vec![]),
        (
            s.inbox.join("truncated.png"),
            good[..good.len() / 3].to_vec(),
        ),
        (s.inbox.join("readme.txt"), b"not an image".to_vec()),
        (s.inbox.join("huge.png"), huge),
    ];
    for (p, b) in &files {
        fs::write(p, b).unwrap();
    }
    run_until_idle(&s);
    let recs = records(&s.results);
    for (p, b) in &files {
        let rs = recs
            .get(&p.display().to_string())
            .unwrap_or_else(|| panic!("no record for {p:?}: {recs:?}"));
        assert_eq!(rs.len(), 1, "{p:?}");
        assert_eq!(&fs::read(p).unwrap(), b, "input changed: {p:?}");
    }
    let status = |name: &str| recs[&s.inbox.join(name).display().to_string()][0]["status"].clone();
    assert_eq!(status("good.png"), "ok");
    for bad in ["empty.png", "truncated.png", "readme.txt", "huge.png"] {
        assert_eq!(status(bad), "rejected", "{bad}");
    }
    assert_eq!(journal_lines(&s.results), files.len());
    assert!(s.results.join("panel.png").is_file());

    // A restart neither repeats nor loses work.
    let before: Vec<_> = fs::read_dir(&s.results)
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
        .collect();
    run_until_idle(&s);
    assert_eq!(journal_lines(&s.results), files.len());
    for (p, mtime) in before
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "json"))
    {
        assert_eq!(
            &fs::metadata(p).unwrap().modified().unwrap(),
            mtime,
            "{p:?} rewritten"
        );
    }
}

#[test]
fn a_slowly_written_file_is_graded_once_when_complete() {
    let s = setup();
    let mut child = spawn(&s);
    let bytes = png_bytes(3);
    let path = s.inbox.join("slow.png");
    {
        use std::io::Write;
        let mut f = fs::File::create(&path).unwrap();
        for chunk in bytes.chunks(bytes.len() / 3 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    wait_for("the slow file's record", Duration::from_secs(60), || {
        !records(&s.results).is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    let recs = records(&s.results);
    let rs = &recs[&path.display().to_string()];
    assert_eq!(rs.len(), 1);
    assert_eq!(
        rs[0]["status"], "ok",
        "graded only when complete: {:?}",
        rs[0]["reason"]
    );
    assert_eq!(journal_lines(&s.results), 1);
}

#[test]
fn a_pulled_stick_does_not_stop_the_appliance_and_a_restart_midway_loses_nothing() {
    let s = setup();
    let mut child = spawn(&s);
    let stick = s.usb.join("STICK");
    fs::create_dir_all(stick.join("DCIM")).unwrap();
    for i in 0..3 {
        fs::write(stick.join(format!("DCIM/knee{i}.png")), png_bytes(10 + i)).unwrap();
    }
    wait_for("a record from the stick", Duration::from_secs(60), || {
        !records(&s.results).is_empty()
    });
    fs::remove_dir_all(&stick).unwrap(); // pulled, maybe mid-way
    fs::write(s.inbox.join("after.png"), png_bytes(20)).unwrap();
    wait_for(
        "the file dropped after the stick was pulled",
        Duration::from_secs(60),
        || records(&s.results).contains_key(&s.inbox.join("after.png").display().to_string()),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the appliance is still running"
    );
    let _ = child.kill(); // a power cut
    let _ = child.wait();

    // The stick comes back; a restart grades what was missed and nothing twice.
    fs::create_dir_all(stick.join("DCIM")).unwrap();
    for i in 0..3 {
        fs::write(stick.join(format!("DCIM/knee{i}.png")), png_bytes(10 + i)).unwrap();
    }
    run_until_idle(&s);
    let recs = records(&s.results);
    for i in 0..3 {
        let rs = &recs[&stick
            .join(format!("DCIM/knee{i}.png"))
            .display()
            .to_string()];
        assert_eq!(rs.len(), 1);
    }
    assert_eq!(journal_lines(&s.results), 4);
    assert_eq!(recs.values().map(Vec::len).sum::<usize>(), 4);
}

#[test]
fn results_that_cannot_be_written_are_reported_and_the_appliance_goes_on() {
    let s = setup();
    let blocked = png_bytes(30);
    let sha = kneescreen::pipeline::digest::sha256_hex(&blocked);
    // A folder where the record should go makes its write fail, as a full or broken disk would.
    fs::create_dir_all(s.results.join(format!("blocked-{}.json", &sha[..8]))).unwrap();
    fs::write(s.inbox.join("blocked.png"), &blocked).unwrap();
    fs::write(s.inbox.join("fine.png"), png_bytes(31)).unwrap();
    let mut args = run_args(&s);
    args.push("--exit-when-idle".into());
    let out = kneescreen().args(&args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "batch run reports what it could not finish: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("cannot write results for"),
        "stderr: {}",
        stderr(&out)
    );
    let recs = records(&s.results);
    assert_eq!(
        recs[&s.inbox.join("fine.png").display().to_string()].len(),
        1
    );
    assert_eq!(
        journal_lines(&s.results),
        1,
        "the failed input is not journaled, so it is retried"
    );
}

/// Starts the appliance with its log in `log`, and waits for the console's address.
fn spawn_with_console(s: &Setup, log: &Path) -> (Child, SocketAddr) {
    let child = kneescreen()
        .args(run_args(s))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut addr = None;
    wait_for("the console", Duration::from_secs(60), || {
        let text = fs::read_to_string(log).unwrap_or_default();
        addr = text
            .split("web console on http://")
            .nth(1)
            // Only a whole line: under an emulator the log can be read while it is being written.
            .and_then(|rest| rest.split_once('\n'))
            .and_then(|(line, _)| line.split_whitespace().next().map(str::to_string));
        addr.is_some()
    });
    (child, addr.unwrap().parse().expect("the console's address"))
}

/// DICOM knees with the patient's name, ID and birth date, one from the inbox and one uploaded:
/// both graded; the console tells who they are only when the configuration enables it; neither
/// the results folder nor the log ever holds the identity.
#[test]
fn patient_identity_is_shown_only_when_enabled_and_never_stored_or_logged() {
    let planted = dicom_writer::PLANTED;
    let spec = dicom_writer::Spec {
        rows: 224,
        columns: 224,
        bits_allocated: 8,
        bits_stored: 8,
        patient: true,
        ..dicom_writer::Spec::default()
    };
    let knee = |seed| {
        let pixels = synthetic_knee(224, 224, seed);
        dicom_writer::write(
            &spec,
            &pixels.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(),
        )
    };
    for show in [false, true] {
        let s = setup();
        let config = fs::read_to_string(&s.config).unwrap();
        fs::write(
            &s.config,
            format!("show_patient_identity = {show}\n{config}"),
        )
        .unwrap();
        let inbox_file = knee(40);
        fs::write(s.inbox.join("IM0001"), &inbox_file).unwrap();
        let log = s.results.with_file_name("stderr.log");
        let (mut child, addr) = spawn_with_console(&s, &log);
        wait_for("the DICOM record", Duration::from_secs(120), || {
            journal_lines(&s.results) == 1
        });
        let record = &records(&s.results)[&s.inbox.join("IM0001").display().to_string()][0];
        assert_eq!(record["status"], "ok", "{record}");
        assert_eq!(record["dicom"]["modality"], "DX");
        let from_inbox = fs::read_dir(&s.results)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .and_then(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
            .unwrap();

        let scan = knee(41);
        let uploaded = upload(addr, "scan.dcm", &scan);
        assert_eq!(uploaded.status, 200, "{}", uploaded.text());
        assert_eq!(uploaded.json()["dicom"]["modality"], "DX");
        let from_upload = uploaded
            .header("Content-Location")
            .and_then(|l| l.strip_prefix("/api/results/")?.strip_suffix(".json"))
            .unwrap()
            .to_string();

        for stem in [&from_inbox, &from_upload] {
            let answer = get(addr, &format!("/api/patient/{stem}"));
            assert_eq!(answer.status, 200);
            if show {
                assert_eq!(answer.json()["name"], "DOE, JANE");
                assert_eq!(answer.json()["birth_date"], "1940-01-01");
            } else {
                assert!(answer.json().is_null(), "{}", answer.text());
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if show {
            // After a restart the same upload is answered from the results folder without a new
            // analysis; the console still learns whose it is.
            let (mut child, addr) = spawn_with_console(&s, &log);
            assert_eq!(upload(addr, "scan.dcm", &scan).status, 200);
            let answer = get(addr, &format!("/api/patient/{from_upload}"));
            assert_eq!(answer.json()["name"], "DOE, JANE");
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(journal_lines(&s.results), 2, "nothing graded twice");
        }

        assert_eq!(
            fs::read(s.inbox.join("IM0001")).unwrap(),
            inbox_file,
            "input untouched"
        );
        let mut stored = vec![(log.clone(), fs::read(&log).unwrap())];
        let uploads = s.results.join("uploads");
        for dir in [&s.results, &uploads] {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                if entry.path().is_file() {
                    stored.push((entry.path(), fs::read(entry.path()).unwrap()));
                }
            }
        }
        assert!(
            stored.len() >= 8,
            "log, 2 records and their pictures, journal, panel"
        );
        for (path, bytes) in &stored {
            if path.parent() == Some(uploads.as_path()) {
                continue; // the uploaded file itself, kept as sent
            }
            // Compressed picture data may hold any short byte string by chance; identity is never
            // written as text into a picture, so the longer strings suffice there.
            let picture = path.extension().is_some_and(|e| e == "png");
            for secret in planted.iter().filter(|s| !picture || s.len() >= 8) {
                assert!(
                    dicom_writer::find(bytes, secret.as_bytes()).is_none(),
                    "{secret:?} in {} (show_patient_identity = {show})",
                    path.display()
                );
            }
        }
    }
}

/// A large image, so that its analysis lasts long enough to stop the appliance in the middle;
/// made once. Under the emulator, where every step is many times slower, a quarter the pixels
/// last long enough.
fn big_png() -> &'static [u8] {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| {
        let (w, h) = if under_emulator() {
            (3000, 2250)
        } else {
            (6000, 4500)
        };
        let mut big = Vec::new();
        synthetic_knee(w, h, 7)
            .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
            .unwrap();
        big
    })
}

/// How many analyses of big.png the note in `results/in-progress` says were started.
fn started_on_big(s: &Setup) -> u64 {
    let note: Option<Value> = fs::read(s.results.join("in-progress"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let inputs = note.as_ref().and_then(|n| n["inputs"].as_array().cloned());
    let big = inputs
        .unwrap_or_default()
        .into_iter()
        .find(|i| i["source"].as_str().is_some_and(|p| p.ends_with("big.png")));
    big.and_then(|i| i["attempts"].as_u64()).unwrap_or(0)
}

#[test]
fn an_input_the_appliance_stops_on_is_tried_once_more_then_set_aside() {
    let big = big_png();
    // Stops the appliance (as a crash, the memory running out or a power cut would) during the
    // analysis of big.png number `n`.
    let stop_midway = |s: &Setup, n: u64| {
        let mut child = spawn(s);
        let start = Instant::now();
        while started_on_big(s) < n {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "analysis {n} never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    };
    for stops in [1, 2] {
        let s = setup();
        let input = s.inbox.join("big.png");
        fs::write(&input, big).unwrap();
        let big_record = || records(&s.results).remove(&input.display().to_string());
        for n in 1..=stops {
            stop_midway(&s, n);
            assert_eq!(big_record(), None, "no record while it was stopped");
            // Another input arrives: analysed in between, it must not reset big.png's count.
            fs::write(
                s.inbox.join(format!("small-{n}.png")),
                png_bytes(60 + n as u32),
            )
            .unwrap();
        }
        run_until_idle(&s);
        let rs = big_record().expect("a record for big.png");
        assert_eq!(rs.len(), 1, "{rs:?}");
        if stops == 1 {
            assert_eq!(
                rs[0]["status"], "ok",
                "one stop (a power cut?) is retried: {rs:?}"
            );
        } else {
            assert_eq!(rs[0]["status"], "rejected", "{rs:?}");
            let reason = rs[0]["reason"].as_str().unwrap();
            assert!(
                reason.contains("stopped while analysing this file, twice"),
                "{reason}"
            );
        }
        let recs = records(&s.results);
        assert_eq!(recs.len(), 1 + stops as usize, "{recs:?}");
        assert!(recs.values().all(|r| r.len() == 1));
        assert!(
            !s.results.join("in-progress").exists(),
            "nothing is left in progress"
        );
        assert_eq!(fs::read(&input).unwrap(), big, "input changed");
        assert_eq!(journal_lines(&s.results), 1 + stops as usize);
    }
}

/// A stop that came with a reboot (a power cut, the watchdog) is not held against the file: the
/// boot ID the appliance reads (here from a file, through its test seam) changes between the two
/// stops, and the input is graded; the same two stops within one boot set it aside.
#[test]
fn a_stop_with_a_reboot_is_not_held_against_the_file() {
    if emulated("stops with and without a reboot") {
        return;
    }
    let big = big_png();
    for reboots in [true, false] {
        let s = setup();
        let boot_file = s.results.parent().unwrap().join("boot_id");
        let input = s.inbox.join("big.png");
        fs::write(&input, big).unwrap();
        for n in 1..=2u64 {
            let boot = if reboots {
                format!("boot-{n}")
            } else {
                "boot-1".into()
            };
            fs::write(&boot_file, format!("{boot}\n")).unwrap();
            let mut child = kneescreen()
                .args(run_args(&s))
                .env("KNEESCREEN_BOOT_ID_FILE", &boot_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_for("the analysis to start", Duration::from_secs(180), || {
                started_on_big(&s) >= n
            });
            child.kill().unwrap();
            child.wait().unwrap();
        }
        fs::write(&boot_file, if reboots { "boot-3" } else { "boot-1" }).unwrap();
        let mut args = run_args(&s);
        args.push("--exit-when-idle".into());
        let out = kneescreen()
            .args(&args)
            .env("KNEESCREEN_BOOT_ID_FILE", &boot_file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let rs = records(&s.results)
            .remove(&input.display().to_string())
            .expect("a record for big.png");
        let said = stderr(&out);
        if reboots {
            assert_eq!(rs[0]["status"], "ok", "{rs:?}");
            assert!(said.contains("cut by a restart of the machine"), "{said}");
        } else {
            assert_eq!(rs[0]["status"], "rejected", "{rs:?}");
            assert!(!said.contains("cut by a restart"), "{said}");
        }
        assert!(!s.results.join("in-progress").exists());
        assert_eq!(fs::read(&input).unwrap(), big, "input changed");
    }
}

#[test]
fn inputs_whose_records_were_cleared_away_are_graded_again() {
    let s = setup();
    let knee = png_bytes(50);
    let scan = png_bytes(51);
    fs::write(s.inbox.join("knee.png"), &knee).unwrap();
    let log = s.results.with_file_name("stderr.log");
    for round in 1..=2 {
        let (mut child, addr) = spawn_with_console(&s, &log);
        wait_for("the inbox record", Duration::from_secs(120), || {
            records(&s.results).contains_key(&s.inbox.join("knee.png").display().to_string())
        });
        let uploaded = upload(addr, "scan.png", &scan);
        assert_eq!(uploaded.status, 200, "round {round}: {}", uploaded.text());
        assert_eq!(uploaded.json()["status"], "ok");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(records(&s.results).len(), 2, "round {round}");
        assert_eq!(journal_lines(&s.results), 2 * round);
        // The technician makes room: every result file goes, the journal stays.
        for entry in fs::read_dir(&s.results).unwrap().flatten() {
            let path = entry.path();
            if path.is_file() && path.file_name().unwrap() != "journal.jsonl" {
                fs::remove_file(path).unwrap();
            }
        }
    }
    assert_eq!(fs::read(s.inbox.join("knee.png")).unwrap(), knee);
}

#[test]
fn a_file_over_the_size_limit_is_rejected_unread_under_a_name_of_its_own() {
    let s = setup();
    let config = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, format!("max_file_mb = 1\n{config}")).unwrap();
    let input = s.inbox.join("scan.png");
    fs::write(&input, vec![0u8; 3 << 20]).unwrap();
    run_until_idle(&s);
    let rs = &records(&s.results)[&input.display().to_string()];
    assert_eq!(rs[0]["status"], "rejected");
    assert!(
        rs[0]["reason"]
            .as_str()
            .unwrap()
            .contains("more than the limit of 1.0 MB"),
        "{rs:?}"
    );
    // Not read, so keyed by what is known of it: path, size and modification time.
    let meta = fs::metadata(&input).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH);
    let identity = format!(
        "{}|{}|{}",
        input.display(),
        meta.len(),
        mtime.unwrap().as_secs()
    );
    let hash = kneescreen::pipeline::digest::sha256_hex(identity.as_bytes());
    let stem = format!("scan-{}", &hash[..8]);
    assert!(s.results.join(format!("{stem}.json")).is_file(), "{stem}");
    run_until_idle(&s);
    assert_eq!(
        journal_lines(&s.results),
        1,
        "not done again after a restart"
    );
}

#[test]
fn a_stop_request_lets_the_analysis_under_way_finish() {
    let s = setup();
    let big = big_png();
    let input = s.inbox.join("big.png");
    fs::write(&input, big).unwrap();
    let mut child = spawn(&s);
    let note = s.results.join("in-progress");
    wait_for("the analysis to start", Duration::from_secs(180), || {
        note.exists()
    });
    // As `systemctl stop` or a shutdown does.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rs = &records(&s.results)[&input.display().to_string()];
    assert_eq!(rs[0]["status"], "ok", "{rs:?}");
    assert!(
        !note.exists(),
        "the stop did not count as a stop during the analysis"
    );
    assert_eq!(fs::read(&input).unwrap(), big);
}

/// A full radiograph with both knees: one record with two knees, the patient's right on the
/// image's left, each graded with its own heatmap and input picture, the film with both boxes;
/// the panel opens on the film and the button steps through each knee's views.
#[test]
fn a_bilateral_radiograph_gives_one_record_with_both_knees() {
    let s = setup();
    let film = s.inbox.join("bilateral standing AP.png");
    write_png(&film, &synthetic_bilateral(1400, 1000, 4));
    run_until_idle(&s);
    let recs = records(&s.results);
    let rs = &recs[&film.display().to_string()];
    assert_eq!(rs.len(), 1, "{rs:?}");
    let r = &rs[0];
    assert_eq!(r["status"], "ok", "{r}");
    let knees = r["knees"].as_array().expect("knees");
    let sides: Vec<&str> = knees.iter().map(|k| k["side"].as_str().unwrap()).collect();
    assert_eq!(sides, ["right", "left"], "{r}");
    for k in knees {
        for key in [
            "box",
            "grade",
            "probabilities",
            "oa",
            "confidence",
            "refer",
            "cam_grid",
        ] {
            assert!(!k[key].is_null(), "knee without {key}: {k}");
        }
        let [x, y, w, h] = [0, 1, 2, 3].map(|i| k["box"][i].as_i64().unwrap());
        assert!(
            w == h && w > 100 && x >= 0 && y >= 0 && x + w <= 1400 && y + h <= 1000,
            "{k}"
        );
        assert!(k["detector_score"].as_f64().is_some());
    }
    // The right knee is on the image's left.
    assert!(knees[0]["box"][0].as_i64() < knees[1]["box"][0].as_i64());
    // The headline is the more severe knee.
    let headline = r["headline_knee"].as_u64().unwrap() as usize;
    assert_eq!(r["grade"], knees[headline]["grade"]);
    assert!(knees
        .iter()
        .all(|k| k["grade"].as_u64() <= r["grade"].as_u64()));

    let stem = fs::read_dir(&s.results)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|n| n.strip_suffix(".film.png").map(str::to_string))
        .expect("a film picture");
    for suffix in [
        ".json",
        ".overlay.png",
        ".input.png",
        ".knee1.overlay.png",
        ".knee1.input.png",
        ".knee2.overlay.png",
        ".knee2.input.png",
    ] {
        let path = s.results.join(format!("{stem}{suffix}"));
        assert!(image::open(&path).is_ok() || suffix == ".json", "{path:?}");
        assert!(path.is_file(), "{path:?}");
    }
    // The panel shows the newest study from its first view, the whole film: the knee boxes'
    // colours (green, red or amber, as the pipeline draws them) are on it.
    let panel = image::open(s.results.join("panel.png")).unwrap().to_rgb8();
    let boxes = [[40, 200, 80], [230, 40, 40], [255, 176, 0]];
    let near =
        |p: &image::Rgb<u8>, c: &[i32; 3]| (0..3).all(|i| (i32::from(p.0[i]) - c[i]).abs() <= 8);
    let box_pixels = panel
        .pixels()
        .filter(|p| boxes.iter().any(|c| near(p, c)))
        .count();
    assert!(
        box_pixels > 50,
        "the panel does not show the film's boxes ({box_pixels} pixels)"
    );
}

/// Images with no knee in them are refused with a reason, never graded.
#[test]
fn an_image_without_a_knee_joint_is_rejected_with_a_reason() {
    let s = setup();
    let blank = s.inbox.join("blank.png");
    write_png(
        &blank,
        &image::GrayImage::from_pixel(800, 600, image::Luma([128])),
    );
    let stripes = s.inbox.join("stripes.png");
    write_png(
        &stripes,
        &image::GrayImage::from_fn(900, 700, |x, y| {
            image::Luma([((x / 40 + y / 90) % 2 * 200) as u8])
        }),
    );
    run_until_idle(&s);
    let recs = records(&s.results);
    for input in [&blank, &stripes] {
        let r = &recs[&input.display().to_string()][0];
        assert_eq!(r["status"], "rejected", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("no knee joint found in this image"),
            "{reason}"
        );
        assert!(r.get("grade").is_none(), "{r}");
    }
}

/// Site calibration from the console, with the real appliance: the clinician's grades are kept
/// per knee; too few are refused with the reason; a head fitted to 55 graded knees (forced, as
/// synthetic knees carry no grade signal to gain on) is saved in the models folder, grades the
/// next study and is named in its record; going back restores the shipped head.
#[test]
fn the_console_calibrates_to_the_clinicians_grades_and_goes_back() {
    if emulated("console calibration") {
        return;
    }
    use http_client::{exchange_waiting, origin, request, request_bytes};
    let s = setup();
    let models = util::models_copy(|_| {});
    let config = fs::read_to_string(&s.config).unwrap();
    let top = format!("models_dir = {:?}\nmodel = \"fp32\"\n", models.path());
    fs::write(&s.config, top + &config).unwrap();
    for i in 0..55u32 {
        write_png(
            &s.inbox.join(format!("k{i:02}.png")),
            &synthetic_knee(224, 224, 3000 + i),
        );
    }
    let log = s.results.parent().unwrap().join("run.log");
    let (mut child, a) = spawn_with_console(&s, &log);
    wait_for("55 records", Duration::from_secs(900), || {
        records(&s.results).len() == 55
    });
    let list = get(a, "/api/results?limit=100").json();
    let stems: Vec<String> = (list.as_array().unwrap().iter())
        .map(|e| e["stem"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stems.len(), 55);
    let o = origin(a);
    let h = [("Origin", o.as_str()), ("Content-Type", "application/json")];
    let calibrate = |body: &str| {
        let bytes = request_bytes(a, "POST", "/api/calibrate", &h, body.as_bytes());
        exchange_waiting(a, &bytes, Duration::from_secs(900))
    };
    let active = models.path().join("site-heads/active.json");
    for (i, stem) in stems.iter().enumerate() {
        let grade = format!(r#"{{"stem":"{stem}","knee":0,"grade":{}}}"#, i % 5);
        let r = request(a, "POST", "/api/site-grades", &h, grade.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        if i == 19 {
            let r = calibrate("");
            assert_eq!(r.status, 422, "{}", r.text());
            assert!(r.text().contains("at least 50"), "{}", r.text());
            assert!(!active.exists());
        }
    }
    // A knee the study does not have is refused.
    let extra = format!(r#"{{"stem":"{}","knee":1,"grade":2}}"#, stems[0]);
    assert_eq!(
        request(a, "POST", "/api/site-grades", &h, extra.as_bytes()).status,
        400
    );
    let grades = get(a, "/api/site-grades").json();
    assert_eq!(grades["counts"], serde_json::json!([11, 11, 11, 11, 11]));
    assert_eq!(grades["head"], "shipped");
    let saved: Value =
        serde_json::from_slice(&fs::read(s.results.join("site-grades.json")).unwrap()).unwrap();
    assert_eq!(saved[&stems[7]]["0"], 2);

    let r = calibrate(r#"{"force": true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["activated"], true);
    assert_eq!(
        report["provenance"]["knees_per_grade"],
        serde_json::json!([11, 11, 11, 11, 11])
    );
    assert!(report["report"].as_str().unwrap().contains("site head"));
    let file = PathBuf::from(report["file"].as_str().unwrap());
    assert!(
        file.starts_with(models.path()) && file.is_file(),
        "{file:?}"
    );
    assert!(active.is_file());
    let head = get(a, "/api/status").json()["head"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(head.starts_with("site-heads/"), "{head}");
    let r = upload(a, "new.png", &png_bytes(77));
    assert_eq!(r.json()["model"]["head"]["name"], head.as_str());

    let r = request(a, "POST", "/api/calibrate/revert", &h, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!active.exists() && file.is_file(), "the head stays on disk");
    assert_eq!(get(a, "/api/status").json()["head"], "shipped");
    let r = upload(a, "newer.png", &png_bytes(78));
    assert_eq!(r.json()["model"]["head"]["name"], "shipped");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `bench --choose` measures at the config's thread count, sets the configured model to the
/// fastest variant that grades the drawn knees as fp32 does, keeps the rest of the clinic's
/// config, and the running appliance's status says why that variant runs.
#[test]
fn bench_choose_sets_the_model_and_the_status_says_why() {
    if util::emulated("bench_choose_sets_the_model_and_the_status_says_why") {
        return;
    }
    let s = setup();
    let original = fs::read_to_string(&s.config).unwrap();
    let head = "# the clinic's note\ninference_threads = 1\n";
    fs::write(&s.config, format!("{head}{original}")).unwrap();
    let config = s.config.to_str().unwrap();
    let out = kneescreen()
        .args([
            "bench",
            "--choose",
            "--json",
            "--runs",
            "1",
            "--agreement-knees",
            "3",
        ])
        .args(["--config", config])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let models = report["models"].as_array().unwrap();
    assert!(models.iter().all(|m| m["threads"] == 1), "{report}");
    let agreeing = models.iter().filter(|m| {
        let a = &m["agreement"];
        assert_eq!(a["knees"], 3, "{m}");
        a["same_grade"] == a["knees"]
    });
    let fastest = agreeing
        .min_by(|a, b| {
            a["image_ms"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["image_ms"].as_f64().unwrap())
        })
        .expect("fp32 always agrees with itself");
    let chosen = fastest["name"].as_str().unwrap();
    let text = fs::read_to_string(&s.config).unwrap();
    assert!(text.starts_with(head), "{text}");
    let c = kneescreen::config::Config::load(Some(&s.config)).unwrap();
    assert_eq!(c.model, chosen);
    assert_eq!(c.inboxes, vec![s.inbox.clone()]);
    let recorded = c.model_choice.expect("the measurement is recorded");
    assert_eq!(recorded.threads, 1);
    assert_eq!(recorded.image_ms.len(), models.len());
    assert!(
        stderr(&out).contains(&format!("chose {chosen}")),
        "{}",
        stderr(&out)
    );

    let log = s.results.with_extension("log");
    let (mut child, a) = spawn_with_console(&s, &log);
    // The console answers while the model is still loading: wait for it.
    let mut status = Value::Null;
    wait_for("the model in the status", Duration::from_secs(60), || {
        status = get(a, "/api/status").json();
        status["model"] != ""
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        status["model"]
            .as_str()
            .unwrap()
            .contains(&format!("({chosen})")),
        "{status}"
    );
    let why = status["model_choice"].as_str().unwrap_or_default();
    assert!(why.starts_with("fastest here, "), "{status}");
}
