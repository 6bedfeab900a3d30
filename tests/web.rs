//! The web console over real sockets on 127.0.0.1, against a fake appliance: uploads, limits,
//! tokens, cross-site and traversal attempts, the panel and the button.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kneescreen::hw::ButtonEvent;
use kneescreen::pipeline::decode::dicom::identity::PatientIdentity;
use kneescreen::record::Record;
use kneescreen::store::results_dir::ResultFile;
use kneescreen::web::{serve, Console, WebConfig, WebServer};
use serde_json::{json, Value};

use crate::support::{http_client, records};
use http_client::*;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const STEM: &str = "knee_left-0a1b2c3d";

/// A door the fake's analysis waits behind, to hold uploads "in analysis".
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    fn wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// Records what the console asked for and answers like the appliance would.
#[derive(Default)]
struct Fake {
    uploads: Mutex<Vec<(Vec<u8>, String)>>,
    presses: Mutex<Vec<ButtonEvent>>,
    /// Every stem the console asked a file for.
    asked: Mutex<Vec<String>>,
    stored: Mutex<Vec<(String, Record)>>,
    gate: Mutex<Option<Arc<Gate>>>,
    frame: AtomicUsize,
    /// The clinician's grades the console set: (stem, knee, grade).
    grades: Mutex<Vec<(String, usize, Option<u8>)>>,
    /// Calibration requests, by `force`.
    calibrations: Mutex<Vec<bool>>,
}

fn sha_of(bytes: &[u8]) -> String {
    // Not SHA-256, but unique enough for the fake's bookkeeping.
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:064x}", h.finish())
}

fn ok_record(file: &str, sha: &str) -> Record {
    let mut g = records::grading(2, [0.05, 0.15, 0.6, 0.15, 0.05]);
    g.headline.grade_name = "Minimal".into();
    g.headline.grade_description = "Definite osteophytes, possible joint-space narrowing".into();
    records::graded(file, sha, g)
}

impl Console for Fake {
    fn analyze_upload(
        &self,
        bytes: Vec<u8>,
        client_name: &str,
    ) -> Result<(String, Record), String> {
        self.uploads
            .lock()
            .unwrap()
            .push((bytes.clone(), client_name.to_string()));
        let gate = self.gate.lock().unwrap().clone();
        if let Some(g) = gate {
            g.wait();
        }
        if bytes == b"boom" {
            return Err("the model could not be run".into());
        }
        let sha = sha_of(&bytes);
        let record = if bytes.starts_with(PNG_MAGIC) {
            ok_record(client_name, &sha)
        } else {
            Record::rejected(
                client_name,
                Some(sha.clone()),
                "not a PNG, JPEG or DICOM image",
            )
        };
        let mut stored = self.stored.lock().unwrap();
        let stem = format!("upload-{}", stored.len());
        stored.insert(0, (stem.clone(), record.clone()));
        Ok((stem, record))
    }

    fn recent(&self, limit: usize) -> Vec<(String, Record)> {
        let mut all = self.stored.lock().unwrap().clone();
        all.push((STEM.into(), ok_record("knee left.png", &"a".repeat(64))));
        all.truncate(limit);
        all
    }

    fn result_file(&self, stem: &str, kind: ResultFile) -> Option<Vec<u8>> {
        self.asked.lock().unwrap().push(stem.to_string());
        if stem != STEM {
            return None;
        }
        Some(match kind {
            ResultFile::Json => serde_json::to_vec(&ok_record("knee left.png", "a")).unwrap(),
            ResultFile::Overlay => [PNG_MAGIC, b"overlay"].concat(),
            ResultFile::Input => [PNG_MAGIC, b"input"].concat(),
            _ => return None,
        })
    }

    fn patient(&self, stem: &str) -> Option<PatientIdentity> {
        self.asked.lock().unwrap().push(stem.to_string());
        (stem == STEM).then(|| PatientIdentity {
            name: Some("DOE, JANE".into()),
            id: Some("PID-12345".into()),
            birth_date: None,
        })
    }

    fn panel_png(&self) -> Vec<u8> {
        let mut png = PNG_MAGIC.to_vec();
        png.extend_from_slice(format!("frame {}", self.frame.load(Ordering::SeqCst)).as_bytes());
        png
    }

    fn press(&self, event: ButtonEvent) {
        self.presses.lock().unwrap().push(event);
        self.frame.fetch_add(1, Ordering::SeqCst);
    }

    fn status(&self) -> Value {
        json!({ "model": "fake (int8)", "queue": 0, "watched": ["/media"], "free_disk_bytes": 1u64 << 30 })
    }

    fn site_grades(&self) -> Value {
        json!({ "entered": self.grades.lock().unwrap().len() })
    }

    fn set_site_grade(&self, stem: &str, knee: usize, grade: Option<u8>) -> Result<(), String> {
        if stem != STEM {
            return Err("no such study".into());
        }
        self.grades
            .lock()
            .unwrap()
            .push((stem.to_string(), knee, grade));
        Ok(())
    }

    fn calibrate(&self, force: bool) -> Result<Value, String> {
        self.calibrations.lock().unwrap().push(force);
        match force {
            true => Ok(json!({ "activated": true })),
            false => Err("12 graded knees: calibration needs at least 50".into()),
        }
    }

    fn revert_head(&self) -> Result<Value, String> {
        Ok(json!({ "was": null }))
    }
}

fn start(configure: impl FnOnce(&mut WebConfig)) -> (WebServer, Arc<Fake>) {
    let mut cfg = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..WebConfig::default()
    };
    configure(&mut cfg);
    let fake = Arc::new(Fake::default());
    let server = serve(cfg, fake.clone()).expect("the console starts");
    (server, fake)
}

fn png_bytes() -> Vec<u8> {
    let mut b = PNG_MAGIC.to_vec();
    b.extend((0..5000u32).map(|i| (i * 7 % 256) as u8));
    b
}

#[test]
fn good_upload_returns_the_record() {
    let (server, fake) = start(|_| {});
    let png = png_bytes();
    let r = upload(server.addr, "knee.png", &png);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let rec = r.json();
    assert_eq!(rec["status"], "ok");
    assert_eq!(rec["grade"], 2);
    assert_eq!(rec["file"], "knee.png");
    // The stored copy (and so the study page) is named in the answer.
    assert_eq!(
        r.header("Content-Location"),
        Some("/api/results/upload-0.json")
    );
    let uploads = fake.uploads.lock().unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].0, png, "the file's bytes arrive unchanged");
    assert_eq!(uploads[0].1, "knee.png");
}

#[test]
fn bad_file_is_a_rejected_record_with_200() {
    let (server, fake) = start(|_| {});
    let r = upload(server.addr, "notes.txt", b"this is not an image");
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = r.json();
    assert_eq!(rec["status"], "rejected");
    assert_eq!(rec["reason"], "not a PNG, JPEG or DICOM image");
    assert!(rec.get("grade").is_none());
    assert_eq!(fake.uploads.lock().unwrap().len(), 1);
}

#[test]
fn empty_file_still_gets_its_record() {
    let (server, fake) = start(|_| {});
    let r = upload(server.addr, "empty.png", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "rejected");
    assert_eq!(fake.uploads.lock().unwrap()[0].0.len(), 0);
}

#[test]
fn internal_failure_is_500_with_a_json_error() {
    let (server, _fake) = start(|_| {});
    let r = upload(server.addr, "x.png", b"boom");
    assert_eq!(r.status, 500);
    let e = r.json();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("the model could not be run"),
        "{e}"
    );
}

#[test]
fn malformed_uploads_are_400_or_415() {
    let (server, fake) = start(|_| {});
    let o = origin(server.addr);
    let same = [("Origin", o.as_str())];
    // Not multipart at all.
    let r = request(
        server.addr,
        "POST",
        "/api/analyze",
        &[same[0], ("Content-Type", "image/png")],
        &png_bytes(),
    );
    assert_eq!(r.status, 415);
    // Multipart without a "file" field.
    let body = b"--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--B--\r\n";
    let ct = ("Content-Type", "multipart/form-data; boundary=B");
    let r = request(server.addr, "POST", "/api/analyze", &[same[0], ct], body);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("\"file\""));
    // Cut short: the closing boundary never comes.
    let (ct2, full) = multipart("a.png", &png_bytes());
    let cut = &full[..full.len() - 30];
    let r = request(
        server.addr,
        "POST",
        "/api/analyze",
        &[same[0], ("Content-Type", &ct2)],
        cut,
    );
    assert_eq!(r.status, 400);
    assert!(fake.uploads.lock().unwrap().is_empty());
}

#[test]
fn an_upload_cut_off_midway_frees_its_slot() {
    let (server, fake) = start(|c| c.max_concurrent_uploads = 1);
    let (ct, body) = multipart("k.png", &png_bytes());
    let head = format!(
        "POST /api/analyze HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\n\
         Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len(),
        a = server.addr
    );
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(parse_response(&out).0.status, 400);
    assert_eq!(upload(server.addr, "next.png", &png_bytes()).status, 200);
    assert_eq!(fake.uploads.lock().unwrap().len(), 1);
}

#[test]
fn idle_connections_beyond_the_cap_are_refused_then_served_again() {
    let (server, _fake) = start(|_| {});
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // The accept thread counts them as they come; give it a moment.
    let t0 = Instant::now();
    loop {
        let r = get(server.addr, "/api/status");
        if r.status == 503 {
            assert!(r.json()["error"].as_str().unwrap().contains("connections"));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no limit on connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(idle);
    let t0 = Instant::now();
    while get(server.addr, "/api/status").status != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "closed connections were not released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn oversized_upload_is_413_before_the_body_is_read() {
    let (server, fake) = start(|c| c.max_upload_bytes = 4096);
    // Declares 10 GB and sends a few bytes: the answer comes at once, nothing is buffered.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /api/analyze HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 10000000000\r\n\r\n",
        a = server.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&[b'x'; 1000]).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let (r, _) = parse_response(&buf);
    assert_eq!(r.status, 413);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("upload limit of 4 KB"));
    assert_eq!(r.header("Connection"), Some("close"));

    // A body within the framing allowance whose file is over the limit: 413 too.
    let r = upload(server.addr, "big.png", &vec![7u8; 4097]);
    assert_eq!(r.status, 413);
    // Exactly at the limit is fine.
    let r = upload(server.addr, "ok.png", &vec![7u8; 4096]);
    assert_eq!(r.status, 200);
    assert_eq!(fake.uploads.lock().unwrap().len(), 1);
}

#[test]
fn a_huge_declared_length_on_any_route_is_harmless() {
    let (server, _fake) = start(|_| {});
    for target in ["/", "/api/status", "/api/button", "/nowhere"] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 999999999999999\r\n\r\nabc",
            server.addr
        );
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{target}: no answer");
    }
    assert_eq!(get(server.addr, "/api/status").status, 200, "still serving");
}

#[test]
fn token_guards_every_request() {
    let (server, fake) = start(|c| c.token = Some("2468".into()));
    let a = server.addr;
    // API without or with a wrong token: 401 with a JSON error.
    let r = get(a, "/api/status");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"kneescreen\"")
    );
    assert!(r.json()["error"].is_string());
    let r = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer 1357")],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = request(a, "GET", "/api/results/knee_left-0a1b2c3d.json", &[], b"");
    assert_eq!(r.status, 401);
    assert!(
        fake.asked.lock().unwrap().is_empty(),
        "nothing read without the token"
    );
    // The right token.
    let r = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer 2468")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["model"], "fake (int8)");
    // Uploads too: without the token nothing is analysed; with it no Origin is needed.
    let (ct, body) = multipart("k.png", &png_bytes());
    let r = request(a, "POST", "/api/analyze", &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 401);
    assert!(fake.uploads.lock().unwrap().is_empty());
    let auth = [
        ("Content-Type", ct.as_str()),
        ("Authorization", "Bearer 2468"),
    ];
    assert_eq!(request(a, "POST", "/api/analyze", &auth, &body).status, 200);

    // A browser gets the sign-in form, then a session cookie.
    let r = get(a, "/");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("name=\"pin\""));
    assert_eq!(get(a, "/assets/app.js").status, 401);
    let o = origin(a);
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", o.as_str()),
    ];
    let r = request(a, "POST", "/login", &form, b"pin=1111");
    assert_eq!(r.status, 401);
    assert!(r.header("Set-Cookie").is_none());
    // The form returns to the page asked for, and only ever to one of the console's pages.
    assert!(get(a, "/panel")
        .text()
        .contains("name=\"next\" value=\"/panel\""));
    for (next, to) in [
        ("%2Fpanel", "/panel"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2Fstudy%2F..%2F..%2Fetc", "/"),
        ("%2Fapi%2Fstatus", "/"),
    ] {
        let body = format!("pin=2468&next={next}");
        let r = request(a, "POST", "/login", &form, body.as_bytes());
        assert_eq!(r.status, 303);
        assert_eq!(r.header("Location"), Some(to), "{next}");
    }
    let r = request(a, "POST", "/login", &form, b"pin=2468");
    assert_eq!(r.status, 303);
    let cookie = r.header("Set-Cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(!session.contains("2468"), "the cookie is not the token");
    let with_cookie = [("Cookie", session.as_str())];
    assert_eq!(request(a, "GET", "/", &with_cookie, b"").status, 200);
    assert_eq!(
        request(a, "GET", "/api/status", &with_cookie, b"").status,
        200
    );
    // A forged cookie is worth nothing.
    let forged = [(
        "Cookie",
        "kneescreen_session=00000000000000000000000000000000",
    )];
    assert_eq!(request(a, "GET", "/api/status", &forged, b"").status, 401);
    // Login from another site is refused.
    let evil = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(request(a, "POST", "/login", &evil, b"pin=2468").status, 403);
    // Signing out ends the session.
    let out = [("Cookie", session.as_str()), ("Origin", o.as_str())];
    assert_eq!(request(a, "POST", "/logout", &out, b"").status, 303);
    assert_eq!(
        request(a, "GET", "/api/status", &with_cookie, b"").status,
        401
    );
}

#[test]
fn wrong_tokens_are_throttled() {
    let (server, _fake) = start(|c| c.token = Some("2468".into()));
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            request(
                server.addr,
                "GET",
                "/api/status",
                &[("Authorization", "Bearer 9999")],
                b"",
            )
            .status
        })
        .collect();
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = request(
        server.addr,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer 2468")],
        b"",
    );
    assert_eq!(r.status, 429, "even the right token waits out the lockout");
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let fake: Arc<dyn Console> = Arc::new(Fake::default());
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let cfg = WebConfig {
            listen: listen.parse().unwrap(),
            token: None,
            ..WebConfig::default()
        };
        let e = serve(cfg, fake.clone()).err().expect("refused").to_string();
        assert!(
            e.contains("token") && e.contains("beyond this machine"),
            "{e}"
        );
    }
    let cfg = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: Some("  ".into()),
        ..WebConfig::default()
    };
    assert!(serve(cfg, fake).is_err(), "a blank token is no token");
}

/// Beyond loopback the console speaks TLS or does not start; on loopback it stays plain HTTP.
#[test]
fn beyond_loopback_the_console_needs_tls() {
    let fake: Arc<dyn Console> = Arc::new(Fake::default());
    let cfg = WebConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        token: Some("2468".into()),
        ..WebConfig::default()
    };
    let e = serve(cfg.clone(), fake.clone())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("without TLS"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let tls = kneescreen::tls::CertificateSource::SelfSigned {
        dir: dir.path().to_path_buf(),
    };
    let server = serve(
        WebConfig {
            tls: Some(tls.clone()),
            ..cfg
        },
        fake.clone(),
    )
    .unwrap();
    assert!(server.url().starts_with("https://"), "{}", server.url());
    assert_eq!(server.fingerprint.as_ref().unwrap().len(), 95);
    let local = WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(tls),
        ..WebConfig::default()
    };
    let server = serve(local, fake).unwrap();
    assert!(server.url().starts_with("http://") && server.fingerprint.is_none());
}

#[test]
fn cross_site_posts_are_403() {
    let (server, fake) = start(|_| {});
    let a = server.addr;
    let (ct, body) = multipart("k.png", &png_bytes());
    let json = ("Content-Type", "application/json");
    for headers in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Origin", "http://127.0.0.1:1")],
        vec![
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Referer", "http://evil.example/page")],
    ] {
        let mut h = headers.clone();
        h.push(("Content-Type", &ct));
        let r = request(a, "POST", "/api/analyze", &h, &body);
        assert_eq!(r.status, 403, "{headers:?}");
        assert!(r.json()["error"].as_str().unwrap().contains("cross-site"));
        let mut h = headers.clone();
        h.push(json);
        let r = request(a, "POST", "/api/button", &h, br#"{"event":"next"}"#);
        assert_eq!(r.status, 403, "{headers:?}");
    }
    assert!(fake.uploads.lock().unwrap().is_empty());
    assert!(fake.presses.lock().unwrap().is_empty());
    // The console's own pages, by each of the three signals.
    let o = origin(a);
    let referer = format!("{o}/panel");
    for h in [
        ("Origin", o.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("Referer", referer.as_str()),
    ] {
        let r = request(a, "POST", "/api/button", &[h, json], br#"{"event":"next"}"#);
        assert_eq!(r.status, 200, "{h:?}");
    }
    // A program on this machine (no browser headers at all) may use the API without a token.
    let r = request(a, "POST", "/api/button", &[json], br#"{"event":"next"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn with_a_token_a_cookie_alone_does_not_carry_a_post() {
    let (server, fake) = start(|c| c.token = Some("2468".into()));
    let a = server.addr;
    let o = origin(a);
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", o.as_str()),
    ];
    let r = request(a, "POST", "/login", &form, b"pin=2468");
    let session = r
        .header("Set-Cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = br#"{"event":"next"}"#;
    let c = ("Cookie", session.as_str());
    assert_eq!(request(a, "POST", "/api/button", &[c], body).status, 403);
    assert_eq!(
        request(
            a,
            "POST",
            "/api/button",
            &[c, ("Origin", "http://evil.example")],
            body
        )
        .status,
        403
    );
    assert_eq!(
        request(a, "POST", "/api/button", &[c, ("Origin", o.as_str())], body).status,
        200
    );
    assert_eq!(*fake.presses.lock().unwrap(), vec![ButtonEvent::Next]);
}

#[test]
fn other_host_names_are_refused_without_a_token() {
    // A page that rebinds its own DNS name to 127.0.0.1 still sends its name as Host.
    let (server, _fake) = start(|_| {});
    let port = server.addr.port();
    for host in [
        "evil.example",
        "evil.example:80",
        "10.0.0.1",
        "127.0.0.1.evil.example",
    ] {
        let h = format!("{host}:{port}");
        let req = format!("GET /api/status HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(server.addr, req.as_bytes()).status, 403, "{host}");
    }
    for host in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]"] {
        let req =
            format!("GET /api/status HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(server.addr, req.as_bytes()).status, 200, "{host}");
    }
}

#[test]
fn traversal_attempts_in_urls_never_reach_the_console() {
    let (server, fake) = start(|_| {});
    let a = server.addr;
    let long = format!("/api/results/{}.json", "a".repeat(81));
    let targets = [
        "/api/results/../../etc/passwd",
        "/api/results/../../etc/passwd.json",
        "/api/results/..%2f..%2fetc%2fpasswd.json",
        "/api/results/%2e%2e%2f%2e%2e%2fetc%2fpasswd.json",
        "/api/results/%2e%2e.json",
        "/api/results/....json",
        "/api/results/a%2fb.overlay.png",
        "/api/results/a%5cb.input.png",
        "/api/results/a\\b.json",
        "/api/results//etc/passwd.json",
        "/api/results/.json",
        "/api/results/x.json.json",
        "/api/results/x.png",
        "/api/results/%00.json",
        long.as_str(),
        "/api/patient/../../etc/passwd",
        "/api/patient/..%2fx",
        "/api/patient/",
        "/study/../../etc/passwd",
        "/study/..%2f..%2fetc%2fpasswd",
        "/study/",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/",
        "/../../etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/src/web/mod.rs",
    ];
    for t in targets {
        let r = get(a, t);
        assert!(matches!(r.status, 400 | 404), "{t}: {}", r.status);
        assert!(r.json()["error"].is_string(), "{t}");
    }
    // Targets that are not a plain path are refused by the HTTP layer.
    for t in ["http://evil.example/etc/passwd", "*", "etc/passwd", "/a b"] {
        let req = format!("GET {t} HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n");
        assert_eq!(exchange(a, req.as_bytes()).status, 400, "{t}");
    }
    assert!(
        fake.asked.lock().unwrap().is_empty(),
        "no invalid name reached the console: {:?}",
        fake.asked.lock().unwrap()
    );
    // A valid name that does not exist is asked for, and is a 404.
    assert_eq!(get(a, "/api/results/no_such-study.json").status, 404);
    assert_eq!(
        *fake.asked.lock().unwrap(),
        vec!["no_such-study".to_string()]
    );
}

#[test]
fn traversal_attempts_in_upload_file_names_are_neutralised() {
    let (server, fake) = start(|_| {});
    for (sent, want) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/root/.ssh/authorized_keys", "authorized_keys"),
        ("C:\\scans\\knee.png", "knee.png"),
        ("..", "upload"),
        ("%2e%2e%2fx.png", "_2e_2e_2fx.png"),
        (".bashrc", "bashrc"),
        (
            "<img src=x onerror=alert(1)>.png",
            "_img src_x onerror_alert(1)_.png",
        ),
    ] {
        let r = upload(server.addr, sent, &png_bytes());
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(r.json()["file"], want, "{sent}");
    }
    for (_, name) in fake.uploads.lock().unwrap().iter() {
        assert!(
            !name.contains('/') && !name.contains('\\') && !name.starts_with('.'),
            "{name}"
        );
    }
}

#[test]
fn concurrent_uploads_beyond_the_limit_get_503() {
    let (server, fake) = start(|c| c.max_concurrent_uploads = 1);
    let gate = Arc::new(Gate::default());
    *fake.gate.lock().unwrap() = Some(gate.clone());
    let addr = server.addr;
    let first = std::thread::spawn(move || upload(addr, "first.png", &png_bytes()));
    let t0 = Instant::now();
    while gate.waiting.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the first upload never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = upload(addr, "second.png", &png_bytes());
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    // Pages and the panel still answer while an analysis runs.
    assert_eq!(get(addr, "/api/panel.png").status, 200);
    gate.release();
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(upload(addr, "third.png", &png_bytes()).status, 200);
    let names: Vec<String> = fake
        .uploads
        .lock()
        .unwrap()
        .iter()
        .map(|u| u.1.clone())
        .collect();
    assert_eq!(names, ["first.png", "third.png"]);
}

#[test]
fn site_grades_and_calibration_reach_the_console() {
    let (server, fake) = start(|_| {});
    let a = server.addr;
    let o = origin(a);
    let h = [("Origin", o.as_str()), ("Content-Type", "application/json")];
    let body = format!(r#"{{"stem":"{STEM}","knee":1,"grade":3}}"#);
    let r = request(a, "POST", "/api/site-grades", &h, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["entered"],
        1,
        "the answer is the grades after the change"
    );
    let clear = format!(r#"{{"stem":"{STEM}","knee":0,"grade":null}}"#);
    assert_eq!(
        request(a, "POST", "/api/site-grades", &h, clear.as_bytes()).status,
        200
    );
    assert_eq!(get(a, "/api/site-grades").json()["entered"], 2);
    for bad in [
        &br#"{"stem":"../x","knee":0,"grade":1}"#[..],
        br#"{"stem":"a","knee":-1,"grade":1}"#,
        br#"{"stem":"a","knee":0,"grade":"two"}"#,
        br#"{"stem":"a"}"#,
        b"",
    ] {
        let r = request(a, "POST", "/api/site-grades", &h, bad);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
    }
    let unknown = br#"{"stem":"nostudy","knee":0,"grade":1}"#;
    let r = request(a, "POST", "/api/site-grades", &h, unknown);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("no such study"))
    );
    assert_eq!(
        *fake.grades.lock().unwrap(),
        vec![(STEM.to_string(), 1, Some(3)), (STEM.to_string(), 0, None)]
    );

    // Calibration: a refusal is 422 with the reason; an empty body means no force.
    let r = request(a, "POST", "/api/calibrate", &h, b"");
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("at least 50"));
    let r = request(a, "POST", "/api/calibrate", &h, br#"{"force":true}"#);
    assert_eq!(
        (r.status, r.json()["activated"].as_bool()),
        (200, Some(true))
    );
    let r = request(a, "POST", "/api/calibrate", &h, b"force");
    assert_eq!(r.status, 400);
    assert_eq!(*fake.calibrations.lock().unwrap(), vec![false, true]);
    assert_eq!(get(a, "/api/calibrate").status, 405);
    let r = request(a, "POST", "/api/calibrate/revert", &h, b"");
    assert_eq!(r.status, 200);
    // Cross-site: a page elsewhere cannot change grades or the head.
    let evil = [
        ("Origin", "http://evil.example"),
        ("Content-Type", "application/json"),
    ];
    for path in [
        "/api/site-grades",
        "/api/calibrate",
        "/api/calibrate/revert",
    ] {
        assert_eq!(
            request(a, "POST", path, &evil, body.as_bytes()).status,
            403,
            "{path}"
        );
    }
    assert_eq!(fake.grades.lock().unwrap().len(), 2);
    assert_eq!(fake.calibrations.lock().unwrap().len(), 2);
}

#[test]
fn panel_png_and_button_reach_the_console() {
    let (server, fake) = start(|_| {});
    let a = server.addr;
    let before = get(a, "/api/panel.png");
    assert_eq!(before.status, 200);
    assert_eq!(before.header("Content-Type"), Some("image/png"));
    assert_eq!(before.header("Cache-Control"), Some("no-store"));
    assert_eq!(before.body, fake.panel_png());
    let o = origin(a);
    let h = [("Origin", o.as_str()), ("Content-Type", "application/json")];
    assert_eq!(
        request(a, "POST", "/api/button", &h, br#"{"event":"next"}"#).status,
        200
    );
    assert_eq!(
        request(a, "POST", "/api/button", &h, br#"{"event":"previous"}"#).status,
        200
    );
    for bad in [
        &br#"{"event":"reboot"}"#[..],
        b"next",
        b"",
        &[b' '; 2000][..],
    ] {
        let r = request(a, "POST", "/api/button", &h, bad);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        *fake.presses.lock().unwrap(),
        vec![ButtonEvent::Next, ButtonEvent::Previous]
    );
    let after = get(a, "/api/panel.png");
    assert_ne!(after.body, before.body, "the mirror shows the new frame");
    let r = get(a, "/api/button");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
}

#[test]
fn results_and_status() {
    let (server, _fake) = start(|c| c.max_upload_bytes = 123_456);
    let a = server.addr;
    upload(a, "one.png", &png_bytes());
    upload(a, "two.txt", b"nope");
    let list = get(a, "/api/results").json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0]["stem"], "upload-1");
    assert_eq!(list[0]["record"]["status"], "rejected");
    assert_eq!(list[2]["stem"], STEM);
    assert_eq!(
        get(a, "/api/results?limit=1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for bad in [
        "/api/results?limit=0",
        "/api/results?limit=-1",
        "/api/results?limit=x",
    ] {
        assert_eq!(get(a, bad).status, 400, "{bad}");
    }
    let r = get(a, &format!("/api/results/{STEM}.json"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["grade"], 2);
    for (suffix, body) in [(".overlay.png", &b"overlay"[..]), (".input.png", b"input")] {
        let r = get(a, &format!("/api/results/{STEM}{suffix}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("image/png"));
        assert!(r.body.ends_with(body));
    }
    let p = get(a, &format!("/api/patient/{STEM}"));
    assert_eq!(p.status, 200);
    assert_eq!(p.header("Cache-Control"), Some("no-store"));
    assert_eq!(p.json()["name"], "DOE, JANE");
    assert_eq!(p.json()["id"], "PID-12345");
    assert!(p.json()["birth_date"].is_null());
    let none = get(a, "/api/patient/other-study");
    assert_eq!(none.status, 200);
    assert!(none.json().is_null());
    let s = get(a, "/api/status").json();
    assert_eq!(s["model"], "fake (int8)");
    assert_eq!(s["web"]["max_upload_bytes"], 123_456);
}

#[test]
fn pages_assets_and_security_headers() {
    let (server, _fake) = start(|_| {});
    let a = server.addr;
    let mut weight = 0;
    for page in [
        "/",
        "/recent",
        "/panel",
        "/status",
        &format!("/study/{STEM}"),
    ] {
        let r = get(a, page);
        assert_eq!(r.status, 200, "{page}");
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert!(r.text().contains("/assets/app.js"));
        assert!(
            !r.text().contains("http://") && !r.text().contains("https://"),
            "no CDN"
        );
        weight = r.body.len();
    }
    for (asset, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = get(a, asset);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some(kind));
        weight += r.body.len();
        // The validator saves the transfer on the next page load.
        let etag = r.header("ETag").unwrap().to_string();
        let again = request(a, "GET", asset, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
    }
    assert!(weight < 60 * 1024, "assets weigh {weight} bytes");
    for path in [
        "/",
        "/api/status",
        "/api/panel.png",
        "/nowhere",
        "/assets/app.js",
    ] {
        let r = get(a, path);
        let csp = r.header("Content-Security-Policy").unwrap_or("");
        assert!(csp.contains("default-src 'self'"), "{path}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
    }
    for path in [
        "/api/status",
        "/api/results",
        "/api/panel.png",
        "/api/nowhere",
    ] {
        assert_eq!(
            get(a, path).header("Cache-Control"),
            Some("no-store"),
            "{path}"
        );
    }
    let r = request(a, "HEAD", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(request(a, "DELETE", "/", &[], b"").status, 405);
}

#[test]
fn http_framing_is_strict_and_bounded() {
    let (server, _fake) = start(|_| {});
    let a = server.addr;
    let cases: [(String, u16); 6] = [
        (format!("POST /api/button HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 411),
        (format!("GET / HTTP/1.1\r\nHost: {a}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), 400),
        (format!("GET / HTTP/1.1\r\nHost: {a}\r\nContent-Length: -1\r\n\r\n"), 400),
        (format!("GET / HTTP/1.1\r\nHost: {a}\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)), 431),
        (format!("GET / HTTP/2.0\r\nHost: {a}\r\n\r\n"), 505),
        (format!("GET /\r\nHost: {a}\r\n\r\n"), 400),
    ];
    for (req, want) in cases {
        assert_eq!(
            exchange(a, req.as_bytes()).status,
            want,
            "{}",
            &req[..req.len().min(60)]
        );
    }
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: {a}\r\n{many}\r\n");
    assert_eq!(exchange(a, req.as_bytes()).status, 431);
    let req = format!("GET /{} HTTP/1.1\r\nHost: {a}\r\n\r\n", "a".repeat(3000));
    assert_eq!(exchange(a, req.as_bytes()).status, 414);

    // Keep-alive: two requests (the first with a small unread body) on one connection.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let two = format!(
        "GET /api/status HTTP/1.1\r\nHost: {a}\r\nContent-Length: 5\r\n\r\nhello\
         GET /api/results?limit=1 HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(two.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let (first, rest) = parse_response(&out);
    let (second, _) = parse_response(rest);
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["model"], "fake (int8)");
    assert_eq!(second.status, 200);
    assert!(second.json().is_array());
}

#[test]
fn stopping_closes_the_port() {
    let (server, _fake) = start(|_| {});
    let addr = server.addr;
    // An idle keep-alive connection does not hold the stop up.
    let idle = TcpStream::connect(addr).unwrap();
    assert_eq!(get(addr, "/api/status").status, 200);
    let t0 = Instant::now();
    server.stop();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    drop(idle);
}
