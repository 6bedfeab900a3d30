//! Helpers for integration tests: run the real binary (under the cross runner when one is set),
//! make temporary folders and synthetic images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kneescreen` binary as a command. With `KNEESCREEN_TEST_RUNNER` set (e.g. to a qemu
/// command line when testing a cross build), the binary runs under it.
pub fn kneescreen() -> Command {
    let exe = env!("CARGO_BIN_EXE_kneescreen");
    match std::env::var("KNEESCREEN_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap_or_default());
            cmd.args(parts).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    }
}

/// Whether the tests run the binary under an emulator (`KNEESCREEN_TEST_RUNNER`).
pub fn under_emulator() -> bool {
    std::env::var("KNEESCREEN_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// True, and said on stderr, when the tests run the binary under an emulator (the cross-built
/// tests in CI). Tests that analyse dozens of images through several processes check
/// logic that is the same on every architecture; they run natively and say so when skipped here.
pub fn emulated(test: &str) -> bool {
    let emulated = under_emulator();
    if emulated {
        eprintln!("{test}: skipped under the emulator (it runs natively)");
    }
    emulated
}

/// `kneescreen run --config CONFIG --panel virtual` in the background, its log appended to `log`;
/// also how long the log was before, so a caller reads only this start's lines.
pub fn spawn_run(config: &Path, log: &Path) -> (std::process::Child, usize) {
    use std::process::Stdio;
    let before = std::fs::read_to_string(log).unwrap_or_default().len();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = kneescreen()
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--panel",
            "virtual",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    (child, before)
}

pub fn run(args: &[&str]) -> Output {
    kneescreen()
        .args(args)
        .output()
        .expect("the kneescreen binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub use kneescreen::tools::synthetic::{
    knee_film, synthetic_bilateral, synthetic_knee, XorShift32,
};

pub fn write_png(path: &Path, img: &image::GrayImage) {
    img.save(path).expect("write PNG");
}

pub fn sha256(path: &Path) -> String {
    kneescreen::pipeline::digest::sha256_hex(&std::fs::read(path).expect("read file"))
}

/// A copy of the shipped models folder whose card `edit` has changed.
pub fn models_copy(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let src = kneescreen::pipeline::model::default_models_dir();
    let dir = temp_dir();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let card_path = dir.path().join("card.json");
    let mut card = serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
    edit(&mut card);
    std::fs::write(&card_path, serde_json::to_string(&card).unwrap()).unwrap();
    test_key().sign_file(&card_path).unwrap();
    dir
}

/// The test signing key, which debug builds trust (release builds do not).
pub fn test_key() -> kneescreen::pipeline::signature::SigningKey {
    let name = "kneescreen test key (debug builds only)";
    kneescreen::pipeline::signature::SigningKey::load(&fixture("test-signing-key.pk8"), name)
        .expect("the test key")
}
