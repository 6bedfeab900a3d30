//! The DICOM network node of `kneescreen run`, against real programs: dcmtk's `echoscu` and
//! `storescu` send radiographs (made here) to the storage SCP; a real Orthanc receives the
//! results. Without dcmtk or Orthanc installed these tests say so and skip.

use crate::support::dicom_writer::{self, Encoding, Spec};
use crate::support::orthanc::{Orthanc, Stores};
use crate::support::util::*;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use serde_json::Value;

const CR: &str = "1.2.840.10008.5.1.4.1.1.1";
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// A folder layout and config for one appliance.
struct Node {
    tmp: tempfile::TempDir,
    inbox: PathBuf,
    received: PathBuf,
    results: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

/// `extra` is appended to the config (a `[dicom]` table is always there).
fn node(dicom_extra: &str, extra: &str) -> Node {
    let tmp = temp_dir();
    let (inbox, received, results) = (
        tmp.path().join("inbox"),
        tmp.path().join("received"),
        tmp.path().join("results"),
    );
    fs::create_dir_all(&inbox).unwrap();
    let config = tmp.path().join("kneescreen.toml");
    fs::write(
        &config,
        format!(
            "inboxes = [{inbox:?}]\nresults = {results:?}\nsettle_ms = 300\n{extra}\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [dicom]\nlisten = \"127.0.0.1:0\"\nreceived = {received:?}\n{dicom_extra}\n"
        ),
    )
    .unwrap();
    let log = tmp.path().join("log.txt");
    Node {
        tmp,
        inbox,
        received,
        results,
        config,
        log,
    }
}

/// Starts the appliance and waits for the DICOM node's address in its log.
fn start(n: &Node) -> (Child, SocketAddr) {
    let (child, before) = spawn_run(&n.config, &n.log);
    let mut addr = None;
    wait_for("the DICOM node", Duration::from_secs(60), || {
        let text = fs::read_to_string(&n.log).unwrap_or_default();
        addr = text[before..]
            .split("DICOM node KNEESCREEN on ")
            .nth(1)
            .and_then(|rest| rest.split_once(';'))
            .and_then(|(a, _)| a.parse().ok());
        addr.is_some()
    });
    (child, addr.unwrap())
}

/// The web console's address from the newest start in the log.
fn console(n: &Node) -> SocketAddr {
    let text = fs::read_to_string(&n.log).unwrap();
    let rest = text.rsplit("web console on http://").next().unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn stop(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dcmtk program, or `None` with a "skipped" line.
fn dcmtk(program: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("{test}: skipped: dcmtk's {program} is not installed (apt install dcmtk)");
    }
    found
}

/// A knee radiograph as DICOM: its SOP class, instance UID, study, encoding and patient.
fn knee_file(
    seed: u32,
    class: &str,
    sop_uid: &str,
    study_uid: &str,
    encoding: Encoding,
) -> Vec<u8> {
    let spec = Spec {
        rows: 224,
        columns: 224,
        bits_allocated: 8,
        bits_stored: 8,
        patient: true,
        encoding,
        modality: if class == CR { "CR" } else { "DX" },
        ..Spec::default()
    };
    let mut header = dicom_writer::header(&spec);
    for (tag, value) in [
        (tags::SOP_CLASS_UID, class),
        (tags::SOP_INSTANCE_UID, sop_uid),
        (tags::STUDY_INSTANCE_UID, study_uid),
        (tags::ACCESSION_NUMBER, "ACC-77"),
    ] {
        let vr = if tag == tags::ACCESSION_NUMBER {
            VR::SH
        } else {
            VR::UI
        };
        header.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let pixels = synthetic_knee(224, 224, seed);
    let samples: Vec<i32> = pixels.iter().map(|&v| i32::from(v)).collect();
    dicom_writer::write_with_header(header, &spec, &samples)
}

/// The data set of a DICOM file: what follows its file meta group.
fn data_set(file: &[u8]) -> &[u8] {
    assert_eq!(&file[128..132], b"DICM");
    // (0002,0000) UL, explicit VR: tag 4 + VR 2 + length 2 + value 4.
    let group_length = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
    &file[144 + group_length..]
}

fn journal_lines(results: &Path) -> usize {
    fs::read_to_string(results.join("journal.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

fn records(results: &Path) -> Vec<Value> {
    files_in(results)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&fs::read(p).unwrap()).unwrap())
        .collect()
}

/// dcmtk's `echoscu` and `storescu`, natively (`None`, with a "skipped" line, when dcmtk is
/// missing or the tests run under an emulator).
fn scanner(test: &str) -> Option<(PathBuf, PathBuf)> {
    let programs = (dcmtk("echoscu", test)?, dcmtk("storescu", test)?);
    (!emulated(test)).then_some(programs)
}

/// C-ECHO to the node as `calling` (with `extra` options, e.g. for TLS).
fn echo(exe: &Path, addr: SocketAddr, calling: &str, extra: &[&str]) -> std::process::Output {
    Command::new(exe)
        .args(extra)
        .args(["-aet", calling, "-aec", "KNEESCREEN"])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .unwrap()
}

fn storescu(
    exe: &Path,
    addr: SocketAddr,
    calling: &str,
    extra: &[&str],
    files: &[PathBuf],
) -> std::process::Output {
    Command::new(exe)
        .args(["-aet", calling, "-aec", "KNEESCREEN"])
        .args(extra)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(files)
        .output()
        .unwrap()
}

/// A scanner (dcmtk) checks the node with C-ECHO and sends CR and DX images in every encoding the
/// node takes: each is kept byte for byte, graded once; a calling AE title not on the list is
/// rejected; the appliance killed in the middle of a batch, restarted and sent the whole batch
/// again grades every image exactly once.
#[test]
fn a_scanner_sends_by_dicom_and_each_image_is_graded_once() {
    let test = "a_scanner_sends_by_dicom_and_each_image_is_graded_once";
    let Some((echoscu, storescu_exe)) = scanner(test) else {
        return;
    };
    let n = node("allowed_calling_ae_titles = [\"SCANNER\"]", "");
    let (mut child, addr) = start(&n);
    let echo = |calling: &str| echo(&echoscu, addr, calling, &[]);
    assert!(
        echo("SCANNER").status.success(),
        "C-ECHO from an allowed AE"
    );
    let refused = echo("INTRUDER");
    assert!(
        !refused.status.success(),
        "an AE title not allowed is rejected"
    );
    wait_for("the rejection in the log", Duration::from_secs(10), || {
        fs::read_to_string(&n.log)
            .unwrap()
            .contains("calling AE title is not allowed")
    });

    // One batch in every encoding, each proposed in its own syntax (storescu proposes only
    // uncompressed syntaxes unless told which compressed one), so the data sets arrive as written.
    let send = n.tmp.path().join("send");
    fs::create_dir_all(&send).unwrap();
    let study = "1.2.826.0.1.3680043.10.1077.9";
    let write = |i: u32, class: &str, encoding: Encoding| -> PathBuf {
        let path = send.join(format!("img{i:02}.dcm"));
        let uid = format!("{study}.{i}");
        fs::write(&path, knee_file(i, class, &uid, study, encoding)).unwrap();
        path
    };
    let first = [
        (CR, Encoding::Explicit, None),
        (dicom_writer::DX_FOR_PRESENTATION, Encoding::Explicit, None),
        (SECONDARY_CAPTURE, Encoding::Explicit, None),
        (CR, Encoding::Implicit, Some("-xi")),
        (
            dicom_writer::DX_FOR_PRESENTATION,
            Encoding::JpegBaseline,
            Some("-xy"),
        ),
        (
            dicom_writer::DX_FOR_PRESENTATION,
            Encoding::JpegLosslessSv1,
            Some("-xs"),
        ),
        (CR, Encoding::Rle, Some("-xr")),
    ];
    // A structured report is not an image: refused in the negotiation, nothing kept.
    let report = send.join("report.dcm");
    fs::write(&report, dicom_writer::structured_report(false)).unwrap();
    let out = storescu(
        &storescu_exe,
        addr,
        "SCANNER",
        &[],
        std::slice::from_ref(&report),
    );
    assert!(!out.status.success(), "an SR is refused");
    assert!(files_in(&n.received).is_empty());
    let mut sent = Vec::new();
    for (i, (class, encoding, option)) in first.into_iter().enumerate() {
        let path = write(i as u32, class, encoding);
        let out = storescu(
            &storescu_exe,
            addr,
            "SCANNER",
            option.as_slice(),
            std::slice::from_ref(&path),
        );
        assert!(
            out.status.success(),
            "storescu {encoding:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sent.push(path);
    }
    wait_for("7 graded images", Duration::from_secs(120), || {
        journal_lines(&n.results) == 7
    });
    let received = files_in(&n.received);
    assert_eq!(received.len(), 7, "{received:?}");
    for path in &sent {
        let original = fs::read(path).unwrap();
        let kept = received
            .iter()
            .map(|r| fs::read(r).unwrap())
            .find(|r| data_set(r) == data_set(&original));
        assert!(
            kept.is_some(),
            "{path:?}: no received file holds its data set as sent"
        );
    }
    let recs = records(&n.results);
    assert_eq!(recs.len(), 7);
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(
            r["file"]
                .as_str()
                .unwrap()
                .starts_with(n.received.to_str().unwrap()),
            "{r}"
        );
    }

    // A second batch; the appliance is killed after a few arrived.
    let second: Vec<PathBuf> = (7..13)
        .map(|i| write(i, dicom_writer::DX_FOR_PRESENTATION, Encoding::Explicit))
        .collect();
    let mut sender = Command::new(&storescu_exe)
        .args(["-aet", "SCANNER", "-aec", "KNEESCREEN"])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(&second)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("part of the second batch", Duration::from_secs(60), || {
        files_in(&n.received).len() >= 9
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let _ = sender.wait();
    let (mut child, addr) = start(&n);
    let out = storescu(&storescu_exe, addr, "SCANNER", &[], &second);
    assert!(
        out.status.success(),
        "storescu again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("13 graded images", Duration::from_secs(120), || {
        journal_lines(&n.results) == 13
    });
    std::thread::sleep(Duration::from_millis(1500)); // anything graded twice would show now
    stop(&mut child);
    assert_eq!(journal_lines(&n.results), 13, "each image graded once");
    assert_eq!(files_in(&n.received).len(), 13, "each image kept once");
    assert_eq!(records(&n.results).len(), 13);
}

/// Garbage on the SCP port, an association request claiming gigabytes, a P-DATA PDU claiming
/// gigabytes and a data set over the size limit each end their connection with a log line; the
/// appliance keeps its memory and still answers.
#[test]
fn garbage_and_giant_claims_are_refused_without_memory_growth() {
    let test = "garbage_and_giant_claims_are_refused_without_memory_growth";
    let n = node("", "max_file_mb = 1");
    let (mut child, addr) = start(&n);
    let peak_kb = |pid: u32| -> u64 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = peak_kb(child.id());
    let exchange = |bytes: &[u8]| -> Vec<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(bytes);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer); // the node closes the connection
        answer
    };
    exchange(b"GET / HTTP/1.1\r\nHost: kneescreen\r\n\r\n");
    let mut giant_rq = vec![0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0];
    giant_rq.extend(std::iter::repeat_n(0x41, 4096));
    exchange(&giant_rq);
    // A valid association, then a P-DATA PDU that claims 4 GB.
    let rq = association_rq("SCANNER", "KNEESCREEN", CR);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&rq).unwrap();
    let mut header = [0u8; 6];
    s.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x02, "the association is accepted");
    let length = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; length];
    s.read_exact(&mut rest).unwrap();
    let _ = s.write_all(&[0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
    let _ = s.write_all(&[0u8; 8192]);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x07,
        "aborted or closed: {answer:?}"
    );
    // A valid association, then a P-DATA PDU cut off halfway (the connection closes).
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&rq).unwrap();
    s.read_exact(&mut header).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize];
    s.read_exact(&mut rest).unwrap();
    s.write_all(&[0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00])
        .unwrap();
    drop(s);
    wait_for("four refusals in the log", Duration::from_secs(20), || {
        let log = fs::read_to_string(&n.log).unwrap();
        log.matches("not a DICOM association request").count() >= 2
            && log.matches("association ended").count() >= 2
    });
    // A data set over the 1 MB limit, sent by a real scanner program when there is one.
    if let Some(storescu_exe) = dcmtk("storescu", test) {
        let big = n.tmp.path().join("big.dcm");
        let spec = Spec {
            rows: 1024,
            columns: 1024,
            bits_allocated: 16,
            bits_stored: 12,
            encoding: Encoding::Explicit,
            ..Spec::default()
        };
        let samples: Vec<i32> = (0..1024 * 1024).map(|i| i % 4096).collect();
        fs::write(&big, dicom_writer::write(&spec, &samples)).unwrap();
        let out = storescu(&storescu_exe, addr, "SCANNER", &[], &[big]);
        assert!(
            !out.status.success(),
            "a data set over the limit is refused"
        );
        wait_for(
            "the size refusal in the log",
            Duration::from_secs(20),
            || {
                fs::read_to_string(&n.log)
                    .unwrap()
                    .contains("larger than the 1048576 bytes")
            },
        );
        assert!(
            files_in(&n.received).is_empty(),
            "nothing over the limit is kept"
        );
    }
    // Natively only: under an emulator the translated code itself grows as new paths run.
    let after = peak_kb(child.id());
    let emulator = std::env::var("KNEESCREEN_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty());
    assert!(
        emulator || after < before + 16 * 1024,
        "peak memory grew from {before} kB to {after} kB"
    );
    // Still answering: a valid association request is accepted.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&rq).unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    assert_eq!(first[0], 0x02, "A-ASSOCIATE-AC after all that");
    drop(s);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the appliance keeps running"
    );
    stop(&mut child);
}

/// An A-ASSOCIATE-RQ PDU proposing `sop_class` in explicit VR little endian.
fn association_rq(calling: &str, called: &str, sop_class: &str) -> Vec<u8> {
    fn item(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0];
        v.extend((body.len() as u16).to_be_bytes());
        v.extend(body);
        v
    }
    let ae = |t: &str| format!("{t:<16}").into_bytes();
    let mut context = vec![1, 0, 0, 0];
    context.extend(item(0x30, sop_class.as_bytes()));
    context.extend(item(0x40, b"1.2.840.10008.1.2.1"));
    let mut user = item(0x51, &16384u32.to_be_bytes());
    user.extend(item(0x52, b"1.2.3.4"));
    let mut body = vec![0, 1, 0, 0];
    body.extend(ae(called));
    body.extend(ae(calling));
    body.extend([0u8; 32]);
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    body.extend(item(0x20, &context));
    body.extend(item(0x50, &user));
    let mut pdu = vec![0x01, 0];
    pdu.extend((body.len() as u32).to_be_bytes());
    pdu.extend(body);
    pdu
}

/// A node whose results go to `orthanc` (short back-off for the tests); `pacs_extra` goes into
/// its `[pacs]` table.
fn node_with_pacs(orthanc: &Orthanc, pacs_extra: &str) -> Node {
    let n = node("", "");
    let text = fs::read_to_string(&n.config).unwrap();
    let pacs = format!(
        "[pacs]\nae_title = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nretry_min_s = 1\nretry_max_s = 2\n{pacs_extra}\n",
        orthanc.ae_title(),
        orthanc.dicom_port()
    );
    fs::write(&n.config, format!("{text}{pacs}")).unwrap();
    n
}

/// Writes `count` DICOM knees of one study into the inbox.
fn drop_knees(n: &Node, count: u32, study: &str) {
    for i in 0..count {
        let uid = format!("{study}.{i}");
        let file = knee_file(
            100 + i,
            dicom_writer::DX_FOR_PRESENTATION,
            &uid,
            study,
            Encoding::Explicit,
        );
        fs::write(n.inbox.join(format!("knee{i}.dcm")), file).unwrap();
    }
}

fn outbox_counts(results: &Path) -> (usize, usize) {
    let pending = files_in(&results.join("outbox")).len();
    let sent = files_in(&results.join("outbox/sent")).len();
    (pending, sent)
}

/// Graded DICOM knees reach a real Orthanc as a Structured Report and a Secondary Capture each,
/// in the source's study with its patient and accession number, the SR naming the grade; the
/// results folder and the log never hold the patient's identity.
#[test]
fn results_reach_the_pacs_in_the_source_study() {
    let test = "results_reach_the_pacs_in_the_source_study";
    if emulated(test) {
        return;
    }
    let tmp = temp_dir();
    let Some(orthanc) = Orthanc::start(tmp.path()) else {
        return;
    };
    let n = node_with_pacs(&orthanc, "");
    let study = "1.2.826.0.1.3680043.10.1077.20";
    drop_knees(&n, 2, study);
    let (mut child, _) = start(&n);
    let ids = orthanc.wait_for_instances(4, Duration::from_secs(120));
    wait_for("both items sent", Duration::from_secs(30), || {
        outbox_counts(&n.results) == (0, 2)
    });
    stop(&mut child);
    assert_eq!(
        orthanc.study_instances(study).len(),
        4,
        "all in the source's study"
    );
    let recs = records(&n.results);
    let mut grades: Vec<u64> = recs.iter().map(|r| r["grade"].as_u64().unwrap()).collect();
    grades.sort();
    let mut reported = Vec::new();
    for id in &ids {
        let tags = orthanc.instance_tags(id);
        assert_eq!(tags["PatientName"], dicom_writer::PATIENT_NAME, "{tags}");
        assert_eq!(tags["PatientID"], dicom_writer::PATIENT_ID);
        assert_eq!(tags["AccessionNumber"], "ACC-77");
        assert_eq!(orthanc.instance_parent_study_uid(id), study);
        match tags["Modality"].as_str().unwrap() {
            "SR" => {
                let text = orthanc.sr_text(id);
                let grade = (0..5).find(|g| text.contains(&format!("KL {g} (")));
                reported.push(grade.expect("the SR names a KL grade") as u64);
                assert!(text.contains("Screening aid"), "{text}");
                assert!(text.contains("Refer to a clinician"), "{text}");
            }
            "OT" => assert_eq!(tags["SOPClassUID"], SECONDARY_CAPTURE),
            other => panic!("unexpected modality {other}"),
        }
    }
    reported.sort();
    assert_eq!(reported, grades, "each SR reports its record's grade");
    // Identity went to the PACS only: not into the results folder, the outbox or the log.
    let mut outputs: Vec<PathBuf> = files_in(&n.results);
    outputs.extend(files_in(&n.results.join("outbox/sent")));
    outputs.push(n.log.clone());
    for path in outputs {
        let bytes = fs::read(&path).unwrap();
        for planted in dicom_writer::PLANTED {
            assert!(
                dicom_writer::find(&bytes, planted.as_bytes()).is_none(),
                "{path:?} holds {planted:?}"
            );
        }
    }
}

/// With the PACS down, results wait in the outbox (also across a restart of the appliance); when
/// it is up again each is delivered once. A PACS that refuses stores (0xA700) is retried and the
/// refusal is reported.
#[test]
fn the_outbox_waits_for_the_pacs_and_delivers_each_result_once() {
    let test = "the_outbox_waits_for_the_pacs_and_delivers_each_result_once";
    if emulated(test) {
        return;
    }
    let tmp = temp_dir();
    let Some(mut orthanc) = Orthanc::start(tmp.path()) else {
        return;
    };
    orthanc.stop();
    let n = node_with_pacs(&orthanc, "");
    drop_knees(&n, 3, "1.2.826.0.1.3680043.10.1077.30");
    let (mut child, _) = start(&n);
    wait_for("3 graded", Duration::from_secs(120), || {
        journal_lines(&n.results) == 3
    });
    wait_for("a failed try", Duration::from_secs(30), || {
        fs::read_to_string(&n.log)
            .unwrap()
            .contains("cannot be reached")
    });
    stop(&mut child);
    assert_eq!(outbox_counts(&n.results), (3, 0), "all wait in the outbox");

    // Up again, but refusing: retried, reported, nothing stored.
    orthanc.restart_with(Stores::Refuse);
    let (mut child, _) = start(&n);
    wait_for("refusals", Duration::from_secs(60), || {
        let log = fs::read_to_string(&n.log).unwrap();
        log.matches("the PACS refused an instance (status 0xa700)")
            .count()
            >= 2
    });
    assert!(orthanc.instances().is_empty());
    assert_eq!(outbox_counts(&n.results).1, 0);
    let item: Value =
        serde_json::from_slice(&fs::read(&files_in(&n.results.join("outbox"))[0]).unwrap())
            .unwrap();
    assert!(
        item["last_error"].as_str().unwrap().contains("refused"),
        "{item}"
    );
    assert!(item["attempts"].as_u64().unwrap() >= 1, "{item}");
    // The console shows the outbox and the refusal (once the loop has read the sender's figures).
    let mut status = Value::Null;
    wait_for(
        "the outbox in the console's status",
        Duration::from_secs(20),
        || {
            status = crate::support::http_client::get(console(&n), "/api/status").json();
            status["outbox"]["last_error"].is_string()
        },
    );
    assert_eq!(status["outbox"]["pending"], 3, "{status}");
    assert_eq!(status["outbox"]["sent"], 0, "{status}");
    let error = status["outbox"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("refused"), "{status}");
    assert!(
        status["dicom"]["listening"]
            .as_str()
            .unwrap()
            .starts_with("KNEESCREEN on port"),
        "{status}"
    );

    // Accepting: each result delivered once.
    orthanc.restart_with(Stores::Accept);
    wait_for("all sent", Duration::from_secs(60), || {
        outbox_counts(&n.results) == (0, 3)
    });
    std::thread::sleep(Duration::from_secs(3)); // a second delivery would show now
    stop(&mut child);
    let ids = orthanc.instances();
    assert_eq!(ids.len(), 6, "one SR and one picture per result");
    let mut uids: Vec<String> = ids
        .iter()
        .map(|id| {
            orthanc.instance_tags(id)["SOPInstanceUID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 6);
    let log = fs::read_to_string(&n.log).unwrap();
    assert_eq!(log.matches(" sent to ORTHANC@").count(), 3, "{log}");
}

/// Asked to, the node speaks DICOM over TLS with the appliance's certificate: a scanner trusting
/// that certificate (dcmtk with `+tla +cf`) checks it with C-ECHO and sends an image, which is
/// graded; the same scanner without TLS is not answered.
#[test]
fn the_node_speaks_dicom_over_tls_when_asked() {
    let test = "the_node_speaks_dicom_over_tls_when_asked";
    let Some((echoscu, storescu_exe)) = scanner(test) else {
        return;
    };
    let n = node("tls = true", "");
    let (mut child, addr) = start(&n);
    let log = fs::read_to_string(&n.log).unwrap();
    assert!(
        log.contains("over TLS (certificate SHA-256 fingerprint "),
        "{log}"
    );
    let cert = n.tmp.path().join("console-tls/console-cert.pem");
    let cert = cert.to_str().unwrap();
    let echo = |tls: &[&str]| echo(&echoscu, addr, "SCANNER", tls);
    let out = echo(&["+tla", "+cf", cert]);
    assert!(
        out.status.success(),
        "C-ECHO over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!echo(&[]).status.success(), "plain DICOM is not answered");
    let file = n.tmp.path().join("knee.dcm");
    let study = "1.2.826.0.1.3680043.10.1077.40";
    fs::write(
        &file,
        knee_file(7, CR, &format!("{study}.1"), study, Encoding::Explicit),
    )
    .unwrap();
    let out = storescu(
        &storescu_exe,
        addr,
        "SCANNER",
        &["+tla", "+cf", cert],
        &[file],
    );
    assert!(
        out.status.success(),
        "storescu over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the image graded", Duration::from_secs(60), || {
        journal_lines(&n.results) == 1
    });
    stop(&mut child);
}

/// With `pacs.tls`, results go to a PACS speaking DICOM over TLS (a real Orthanc), checked
/// against the certificate given; a PACS whose certificate is not the one trusted gets nothing,
/// and the outbox says why.
#[test]
fn results_reach_a_pacs_over_tls_only_when_its_certificate_is_trusted() {
    let test = "results_reach_a_pacs_over_tls_only_when_its_certificate_is_trusted";
    if emulated(test) {
        return;
    }
    let tmp = temp_dir();
    let Some(orthanc) = Orthanc::start_tls(tmp.path()) else {
        return;
    };
    let stranger = tmp.path().join("stranger.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    fs::write(&stranger, other.cert.pem()).unwrap();
    let n = node_with_pacs(&orthanc, &format!("tls = true\nca_cert = {stranger:?}"));
    drop_knees(&n, 1, "1.2.826.0.1.3680043.10.1077.50");
    let (mut child, _) = start(&n);
    wait_for("a refused TLS handshake", Duration::from_secs(60), || {
        fs::read_to_string(&n.log)
            .unwrap()
            .contains("cannot be reached")
    });
    stop(&mut child);
    assert!(
        orthanc.instances().is_empty(),
        "nothing sent to an untrusted PACS"
    );
    assert_eq!(outbox_counts(&n.results), (1, 0));

    let text = fs::read_to_string(&n.config).unwrap();
    let trusted = format!("{:?}", orthanc.tls_cert());
    fs::write(&n.config, text.replace(&format!("{stranger:?}"), &trusted)).unwrap();
    let (mut child, _) = start(&n);
    orthanc.wait_for_instances(2, Duration::from_secs(60));
    wait_for("the item sent", Duration::from_secs(30), || {
        outbox_counts(&n.results) == (0, 1)
    });
    stop(&mut child);
    let log = fs::read_to_string(&n.log).unwrap();
    assert!(log.contains("over TLS"), "{log}");
}
