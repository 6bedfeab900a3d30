//! The web console beyond loopback speaks only TLS: with the certificate made on the first start
//! (kept, so its fingerprint survives restarts), checked by a real TLS client (curl) against the
//! certificate file, refused by curl when pinned to another key, unanswered in plain HTTP, and
//! with a Secure session cookie. The fingerprint in the log is the certificate's SHA-256.

use crate::support::util::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use kneescreen::tls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn curl_present(test: &str) -> bool {
    let present = Command::new("curl").arg("--version").output().is_ok();
    if !present {
        eprintln!("{test}: skipped: curl is not installed");
    }
    present
}

/// Starts the appliance; returns it, the console's port and the logged fingerprint.
fn start(config: &Path, log: &Path) -> (Child, u16, String) {
    let (mut child, before) = spawn_run(config, log);
    let start = Instant::now();
    let line = loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        // Only a whole line: under an emulator the log can be read while it is being written.
        let found = text[before..]
            .lines()
            .find(|l| l.contains("web console on https://") && l.ends_with(')'))
            .map(str::to_string);
        if let Some(line) = found {
            break line;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no https console in the log: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest = line
        .split("web console on https://")
        .nth(1)
        .unwrap_or_default();
    let port = rest.split_whitespace().next().unwrap_or_default();
    let port = port
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let fp = rest.split("fingerprint ").nth(1).unwrap_or_default();
    (child, port, fp.trim_end_matches(')').to_string())
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_console_beyond_loopback_speaks_only_tls_with_a_kept_certificate() {
    let test = "the_console_beyond_loopback_speaks_only_tls_with_a_kept_certificate";
    if !curl_present(test) || emulated(test) {
        return;
    }
    let tmp = temp_dir();
    let (inbox, results) = (tmp.path().join("inbox"), tmp.path().join("results"));
    let config = tmp.path().join("kneescreen.toml");
    fs::write(
        &config,
        format!(
            "inboxes = [{inbox:?}]\nresults = {results:?}\n[web]\nlisten = \"0.0.0.0:0\"\ntoken = \"2468\"\n"
        ),
    )
    .unwrap();
    let log = tmp.path().join("log.txt");
    let (mut child, port, fingerprint) = start(&config, &log);

    // The certificate is kept in the data folder (beside the results), and the log names it.
    let cert: PathBuf = tmp.path().join("console-tls").join(tls::SELF_SIGNED_CERT);
    let der = CertificateDer::from_pem_file(&cert).expect("the kept certificate");
    assert_eq!(fingerprint, tls::fingerprint(der.as_ref()));

    let base = format!("https://127.0.0.1:{port}");
    let cacert = cert.to_str().unwrap();
    // Trusting exactly this certificate, a TLS client gets the login page.
    let out = curl(&[
        "--cacert",
        cacert,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/login"),
    ]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // Pinned to another key, it refuses to talk; without trusting it, too.
    let other = format!("sha256//{}", "A".repeat(43) + "=");
    let out = curl(&[
        "--cacert",
        cacert,
        "--pinnedpubkey",
        &other,
        &format!("{base}/login"),
    ]);
    assert!(!out.status.success(), "a wrong pin must fail");
    assert!(
        !curl(&[&format!("{base}/login")]).status.success(),
        "an untrusted certificate must fail"
    );
    // Plain HTTP gets no HTTP answer at all.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{port}/login"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000",
        "no plaintext answer"
    );

    // Signing in over TLS: the session cookie is Secure, HttpOnly and SameSite.
    let jar = tmp.path().join("cookies");
    let out = curl(&[
        "--cacert",
        cacert,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-c",
        jar.to_str().unwrap(),
        "-H",
        &format!("Origin: {base}"),
        "--data",
        "pin=2468&next=/",
        &format!("{base}/login"),
    ]);
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let out = curl(&[
        "--cacert",
        cacert,
        "-b",
        jar.to_str().unwrap(),
        &format!("{base}/api/status"),
    ]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("status: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        status["console_certificate"],
        fingerprint.as_str(),
        "{status}"
    );

    // Restarted: the same certificate.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let (mut child, _, again) = start(&config, &log);
    assert_eq!(
        again, fingerprint,
        "the certificate is kept across restarts"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}
