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

/// The tests' one pseudo-random generator (xorshift32): deterministic, no dependency.
pub struct XorShift32(u32);

impl XorShift32 {
    /// Starts from `state` (0 is replaced by 1: xorshift never leaves 0).
    pub fn new(state: u32) -> Self {
        XorShift32(state.max(1))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// A knee-like synthetic radiograph: two bright bone ends and a dark joint gap, with noise.
pub fn synthetic_knee(width: u32, height: u32, seed: u32) -> image::GrayImage {
    let mut rng = XorShift32::new(seed.wrapping_mul(2_654_435_761));
    image::GrayImage::from_fn(width, height, |x, y| {
        let state = rng.next_u32();
        let (u, v) = (
            x as f32 / width as f32 - 0.5,
            y as f32 / height as f32 - 0.5,
        );
        let bone = if v.abs() > 0.04 && u.abs() < 0.35 + v.abs() * 0.2 {
            150.0
        } else {
            0.0
        };
        image::Luma([(bone + 50.0 + (state % 24) as f32).min(255.0) as u8])
    })
}

pub fn write_png(path: &Path, img: &image::GrayImage) {
    img.save(path).expect("write PNG");
}

pub fn sha256(path: &Path) -> String {
    kneescreen::pipeline::model::sha256_hex(&std::fs::read(path).expect("read file"))
}
