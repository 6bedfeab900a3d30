//! A real Orthanc PACS for the tests that check the appliance's results reach one: started on
//! free loopback ports with its storage in a test folder, stopped and restarted on the same ports
//! and storage (a PACS that is down for a while), optionally refusing every C-STORE, and read back
//! through its REST API. Without Orthanc installed, `start` says the test is skipped.
//!
//! Orthanc 1.10.1 (Debian) facts this relies on, checked with dcmtk's `storescu`:
//! - it answers within about 0.2 s of starting, and takes 3 to 5 s to stop on SIGTERM;
//! - a second C-STORE of a stored SOP Instance UID is answered success and the first copy is kept
//!   (`OverwriteInstances` false), even when the second one differs;
//! - a Lua `ReceivedInstanceFilter` returning false drops the instance but still answers success;
//!   one raising an error makes Orthanc answer 0xA700 "Refused: Out of resources" (`Stores::Refuse`);
//! - `ReceivedCStoreInstanceFilter` exists, but a status it returns is not passed on (0xA700 is
//!   stored and answered success);
//! - JSON tag dumps leave out values longer than 256 characters (`null`, "TooLong"); `sr_text`
//!   fetches those one by one.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http_client::{parse_response, request_bytes, Resp};

/// The called AE title Orthanc answers as (it does not check it).
pub const AE_TITLE: &str = "ORTHANC";

const SKIPPED: &str = "skipped: Orthanc is not installed (apt install orthanc)";
const READY_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const LOG_TAIL_LINES: usize = 40;

/// How Orthanc answers a C-STORE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    /// Keeps the instance and answers success (0x0000).
    Accept,
    /// Keeps nothing and answers 0xA700 "Refused: Out of resources": a Lua
    /// `ReceivedInstanceFilter` that raises an error.
    Refuse,
    /// Keeps nothing but answers success: a Lua `ReceivedInstanceFilter` that returns false.
    Discard,
}

/// A running (or stopped) Orthanc; stopped when dropped.
pub struct Orthanc {
    exe: PathBuf,
    dir: PathBuf,
    /// Unique per instance, so a readiness answer from another test's Orthanc is not taken.
    name: String,
    dicom_port: u16,
    http_port: u16,
    stores: Stores,
    /// DICOM over TLS with a certificate made for it (`tls_cert`).
    tls: bool,
    child: Option<Child>,
}

impl Orthanc {
    /// Starts an Orthanc that keeps what it is sent, with its files in `dir`; `None` (and a
    /// "skipped" line) when Orthanc is not installed.
    pub fn start(dir: &Path) -> Option<Orthanc> {
        Orthanc::start_with(dir, Stores::Accept)
    }

    /// Starts an Orthanc that answers every C-STORE with a failure status (0xA700).
    pub fn start_refusing(dir: &Path) -> Option<Orthanc> {
        Orthanc::start_with(dir, Stores::Refuse)
    }

    /// Starts an Orthanc that speaks DICOM only over TLS, with a self-signed certificate for
    /// 127.0.0.1 in `tls_cert()`; clients need no certificate of their own.
    pub fn start_tls(dir: &Path) -> Option<Orthanc> {
        Orthanc::start_inner(dir, Stores::Accept, true)
    }

    /// The certificate Orthanc's DICOM TLS presents (PEM).
    pub fn tls_cert(&self) -> PathBuf {
        self.dir.join("orthanc-tls-cert.pem")
    }

    pub fn start_with(dir: &Path, stores: Stores) -> Option<Orthanc> {
        Orthanc::start_inner(dir, stores, false)
    }

    fn start_inner(dir: &Path, stores: Stores, tls: bool) -> Option<Orthanc> {
        let Some(exe) = executable() else {
            eprintln!("{SKIPPED}");
            return None;
        };
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kneescreen-test-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        // The ports are free when picked, not when Orthanc binds them: on a clash, pick again.
        for attempt in 1..=3 {
            let (dicom_port, http_port) = free_ports();
            let mut orthanc = Orthanc {
                exe: exe.clone(),
                dir: dir.to_path_buf(),
                name: name.clone(),
                dicom_port,
                http_port,
                stores,
                tls,
                child: None,
            };
            match orthanc.launch() {
                Ok(()) => return Some(orthanc),
                Err(why) if attempt < 3 && why.contains("already in use") => continue,
                Err(why) => panic!("Orthanc did not start: {why}"),
            }
        }
        unreachable!()
    }

    /// Stops Orthanc (SIGTERM, then SIGKILL if it lingers); the ports and storage stay reserved
    /// for `restart`. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: kill(2) on the id of our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_WITHIN;
            while let Ok(None) = child.try_wait() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        let _ = child.wait();
    }

    /// Stops Orthanc and starts it again on the same ports with the same storage, answering
    /// stores as before.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(why) = self.launch() {
            panic!("Orthanc did not restart: {why}");
        }
    }

    /// `restart`, answering stores as `stores` says from now on.
    pub fn restart_with(&mut self, stores: Stores) {
        self.stores = stores;
        self.restart();
    }

    /// True between a start and a stop.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn stores(&self) -> Stores {
        self.stores
    }

    pub fn dicom_port(&self) -> u16 {
        self.dicom_port
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn ae_title(&self) -> &'static str {
        AE_TITLE
    }

    pub fn dicom_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.dicom_port))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("orthanc.log")
    }

    /// The last lines of Orthanc's log (every start appends to it), for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// A REST request; panics, with the log tail, if Orthanc does not answer.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        self.try_request(method, path, body).unwrap_or_else(|e| {
            panic!(
                "Orthanc did not answer {method} {path}: {e}\n--- Orthanc log ---\n{}",
                self.log_tail()
            )
        })
    }

    /// A REST GET answered 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        self.json(self.request("GET", path, b""), "GET", path)
    }

    /// A REST POST of `body` answered 200 with JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> Value {
        let bytes = serde_json::to_vec(body).unwrap();
        self.json(self.request("POST", path, &bytes), "POST", path)
    }

    /// The Orthanc ids of every stored instance.
    pub fn instances(&self) -> Vec<String> {
        ids(&self.get_json("/instances"))
    }

    /// Every instance, once at least `n` are stored; panics after `timeout`.
    pub fn wait_for_instances(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.instances();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "Orthanc holds {} instance(s) after {timeout:?}, not {n}\n\
                     --- Orthanc log ---\n{}",
                    found.len(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An instance's tags by name, sequences nested (values over 256 characters are `null`).
    pub fn instance_tags(&self, id: &str) -> Value {
        self.get_json(&format!("/instances/{id}/simplified-tags"))
    }

    /// The StudyInstanceUID of the study an instance was filed under.
    pub fn instance_parent_study_uid(&self, id: &str) -> String {
        let study = self.get_json(&format!("/instances/{id}/study"));
        study["MainDicomTags"]["StudyInstanceUID"]
            .as_str()
            .unwrap_or_else(|| panic!("no StudyInstanceUID for instance {id}: {study}"))
            .to_string()
    }

    /// The Orthanc ids of the instances in the study `study_uid`.
    pub fn study_instances(&self, study_uid: &str) -> Vec<String> {
        let query = json!({
            "Level": "Instance",
            "Query": { "StudyInstanceUID": study_uid },
            "Expand": false,
        });
        ids(&self.post_json("/tools/find", &query))
    }

    /// The Orthanc id of the instance whose SOPInstanceUID is `sop_uid`, if stored.
    pub fn instance_by_sop_uid(&self, sop_uid: &str) -> Option<String> {
        // The body is the bare UID: a JSON string ("...") finds nothing.
        let resp = self.request("POST", "/tools/lookup", sop_uid.as_bytes());
        let found = self.json(resp, "POST", "/tools/lookup");
        found
            .as_array()?
            .iter()
            .find(|r| r["Type"] == "Instance")
            .and_then(|r| r["ID"].as_str())
            .map(str::to_string)
    }

    /// The stored DICOM file of an instance.
    pub fn instance_file(&self, id: &str) -> Vec<u8> {
        let resp = self.request("GET", &format!("/instances/{id}/file"), b"");
        assert_eq!(
            resp.status,
            200,
            "GET /instances/{id}/file: {}",
            resp.text()
        );
        resp.body
    }

    /// Every TextValue, CodeMeaning (concept names, coded values, units) and NumericValue found
    /// anywhere in an instance (an SR's content tree), one a line, in tag order, so a test can
    /// assert that a grade or finding reached the PACS. Values too long for Orthanc's JSON dump
    /// are fetched on their own.
    pub fn sr_text(&self, id: &str) -> String {
        let tags = self.get_json(&format!("/instances/{id}/tags"));
        let mut out = Vec::new();
        self.collect_text(id, &tags, "", &mut out);
        out.join("\n")
    }

    /// Walks Orthanc's full tag format: `{"gggg,eeee": {"Name", "Type", "Value"}}`, sequences
    /// as lists of such objects; `path` is the `/content/...` route to `dataset`.
    fn collect_text(&self, id: &str, dataset: &Value, path: &str, out: &mut Vec<String>) {
        let Some(elements) = dataset.as_object() else {
            return;
        };
        for (tag, element) in elements {
            let route = format!("{path}/{}", tag.replace(',', "-"));
            match element["Type"].as_str().unwrap_or_default() {
                "Sequence" => {
                    for (i, item) in element["Value"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        self.collect_text(id, item, &format!("{route}/{i}"), out);
                    }
                }
                kind if TEXT_TAGS.contains(&element["Name"].as_str().unwrap_or_default()) => {
                    let value = match (kind, &element["Value"]) {
                        (_, Value::String(s)) => s.clone(),
                        ("TooLong", _) => {
                            let resp = self.request(
                                "GET",
                                &format!("/instances/{id}/content{route}"),
                                b"",
                            );
                            assert_eq!(resp.status, 200, "GET content{route}: {}", resp.text());
                            resp.text()
                        }
                        _ => continue,
                    };
                    let value = value.trim_end_matches(['\0', ' ']).trim();
                    if !value.is_empty() {
                        out.push(value.to_string());
                    }
                }
                _ => {}
            }
        }
    }

    fn json(&self, resp: Resp, method: &str, path: &str) -> Value {
        assert_eq!(
            resp.status,
            200,
            "Orthanc answered {method} {path} with {}: {}\n--- Orthanc log ---\n{}",
            resp.status,
            resp.text(),
            self.log_tail()
        );
        resp.json()
    }

    /// One request on a new connection; an error, not a panic, when Orthanc is not (yet) there.
    fn try_request(&self, method: &str, path: &str, body: &[u8]) -> io::Result<Resp> {
        let addr = self.http_addr();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        s.write_all(&request_bytes(addr, method, path, headers, body))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        if !out.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no complete answer",
            ));
        }
        Ok(parse_response(&out).0)
    }

    /// Writes the configuration and starts Orthanc; waits until it answers as itself. An error
    /// (with the log tail) if it exits first; a panic if it neither answers nor exits in time.
    fn launch(&mut self) -> Result<(), String> {
        let config = self.write_config();
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the Orthanc log");
        writeln!(
            log,
            "=== kneescreen tests: starting Orthanc ({:?}), DICOM port {}, HTTP port {} ===",
            self.stores, self.dicom_port, self.http_port
        )
        .unwrap();
        let child = Command::new(&self.exe)
            .arg(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.exe.display()));
        self.child = Some(child);

        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "Orthanc exited ({status}) before answering\n--- Orthanc log ---\n{}",
                        self.log_tail()
                    ));
                }
            }
            if self.answers_as_itself()
                && TcpStream::connect_timeout(&self.dicom_addr(), Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                self.stop();
                panic!(
                    "Orthanc did not answer within {READY_WITHIN:?}\n--- Orthanc log ---\n{tail}"
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn answers_as_itself(&self) -> bool {
        match self.try_request("GET", "/system", b"") {
            Ok(r) if r.status == 200 => serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|system| system["Name"] == self.name.as_str()),
            _ => false,
        }
    }

    /// The configuration file (rewritten at every start), and the Lua script `stores` needs.
    fn write_config(&self) -> PathBuf {
        let storage = self.dir.join("orthanc-storage");
        let index = self.dir.join("orthanc-index");
        fs::create_dir_all(&storage).expect("create the Orthanc storage folder");
        fs::create_dir_all(&index).expect("create the Orthanc index folder");
        let lua = match self.stores {
            Stores::Accept => None,
            // An error in the filter is what makes 1.10.1 answer a failure status (0xA700).
            Stores::Refuse => Some(
                "function ReceivedInstanceFilter(dicom, origin, info)\n  \
                 error('kneescreen tests: this PACS refuses every store')\nend\n",
            ),
            Stores::Discard => {
                Some("function ReceivedInstanceFilter(dicom, origin, info)\n  return false\nend\n")
            }
        };
        let scripts: Vec<String> = match lua {
            Some(script) => {
                let path = self.dir.join("orthanc-filter.lua");
                fs::write(&path, script).expect("write the Orthanc Lua script");
                vec![path.to_string_lossy().into_owned()]
            }
            None => Vec::new(),
        };
        let mut tls = json!({});
        if self.tls {
            let (cert, key) = (self.tls_cert(), self.dir.join("orthanc-tls-key.pem"));
            if !cert.exists() {
                let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
                let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
                fs::write(&cert, made.cert.pem()).unwrap();
                fs::write(&key, made.key_pair.serialize_pem()).unwrap();
            }
            tls = json!({
                "DicomTlsEnabled": true,
                "DicomTlsCertificate": cert,
                "DicomTlsPrivateKey": key,
                "DicomTlsTrustedCertificates": cert,
                "DicomTlsRemoteCertificateRequired": false,
            });
        }
        let mut config = json!({
            "Name": self.name,
            "StorageDirectory": storage,
            "IndexDirectory": index,
            "StorageCompression": false,
            "MaximumStorageSize": 0,
            "MaximumPatientCount": 0,
            "LuaScripts": scripts,
            "Plugins": [],
            "ConcurrentJobs": 1,
            "SaveJobs": false,
            "JobsHistorySize": 10,
            "HttpServerEnabled": true,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "SslEnabled": false,
            "WebDavEnabled": false,
            "HttpDescribeErrors": true,
            "HttpCompressionEnabled": false,
            "KeepAlive": false,
            "HttpThreadsCount": 4,
            "ExecuteLuaEnabled": false,
            "DicomServerEnabled": true,
            "DicomAet": AE_TITLE,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowEcho": true,
            "DicomAlwaysAllowStore": true,
            "DicomThreadsCount": 2,
            "DicomScpTimeout": 10,
            "DicomModalities": {},
            "OrthancPeers": {},
            "StableAge": 1,
            "OverwriteInstances": false,
            "LoadPrivateDictionary": false,
            "DeidentifyLogs": false,
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(tls.as_object().unwrap().clone());
        let path = self.dir.join("orthanc.json");
        fs::write(&path, serde_json::to_string_pretty(&config).unwrap())
            .expect("write the Orthanc configuration");
        path
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The attributes `sr_text` gathers.
const TEXT_TAGS: [&str; 3] = ["TextValue", "CodeMeaning", "NumericValue"];

/// `/usr/sbin/Orthanc`, else `Orthanc` on the PATH.
fn executable() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/Orthanc");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("Orthanc"))
        .find(|p| p.is_file())
}

/// Two distinct free loopback ports (DICOM, HTTP), both held while picked.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A JSON list of ids.
fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list of ids: {list}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not an id: {v}"))
                .to_string()
        })
        .collect()
}
