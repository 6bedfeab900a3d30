//! Golden tests: the Rust preprocessing against opencv-python's output, pixel by pixel.
//! Fixtures and manifest.json are made by scripts/make_preprocess_fixtures.py (synthetic images).
//!
//! Everything here must be identical to cv2. The contract tolerates ±1 for INTER_AREA (training
//! never uses it), but the port reproduces OpenCV's f32 arithmetic and measures identical, so
//! any difference is treated as a regression. The tolerances for decoding live in decode.rs.

use std::path::{Path, PathBuf};

use image::GrayImage;
use kneescreen::pipeline::decode::{decode_gray, Limits};
use kneescreen::pipeline::preprocess::{
    equalize_hist, preprocess, resize_area, resize_linear, to_network_input, INPUT_SIZE,
    PREPROCESSING_ID,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn manifest(kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).expect(
        "tests/fixtures/preprocess/manifest.json (run scripts/make_preprocess_fixtures.py)",
    );
    let all: Vec<Value> = serde_json::from_str(&text).expect("manifest.json is valid JSON");
    let entries: Vec<Value> = all.into_iter().filter(|e| e["kind"] == kind).collect();
    assert!(!entries.is_empty(), "no {kind} entries in manifest.json");
    entries
}

fn field<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {entry}"))
}

/// An 8-bit grey fixture (inputs and cv2 outputs), read with the `image` crate so that these
/// tests do not depend on the decoder under test.
fn load_gray(name: &str) -> GrayImage {
    image::open(fixture_dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_luma8()
}

/// The entry's input, cropped to its "crop" [x, y, w, h] when it has one.
fn input_of(entry: &Value) -> GrayImage {
    let img = load_gray(field(entry, "input"));
    match entry["crop"].as_array() {
        Some(c) => {
            let n = |i: usize| c[i].as_u64().expect("crop values") as u32;
            image::imageops::crop_imm(&img, n(0), n(1), n(2), n(3)).to_image()
        }
        None => img,
    }
}

fn target_size(entry: &Value) -> (u32, u32) {
    let s = entry["size"].as_array().expect("size");
    let n = |i: usize| s[i].as_u64().expect("size values") as u32;
    (n(0), n(1))
}

/// Asserts pixel equality, reporting how many pixels differ and by how much.
fn assert_same(what: &str, got: &GrayImage, want: &GrayImage) {
    assert_eq!(got.dimensions(), want.dimensions(), "{what}: size");
    let diffs: Vec<i32> = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(&a, &b)| i32::from(a) - i32::from(b))
        .filter(|&d| d != 0)
        .collect();
    let max = diffs.iter().map(|d| d.abs()).max().unwrap_or(0);
    assert!(
        diffs.is_empty(),
        "{what}: {} of {} pixels differ from cv2 (max |Δ| = {max})",
        diffs.len(),
        want.as_raw().len()
    );
}

#[test]
fn resize_linear_matches_cv2_exactly() {
    for entry in manifest("resize_linear") {
        let (w, h) = target_size(&entry);
        let got = resize_linear(&input_of(&entry), w, h);
        assert_same(
            field(&entry, "expected"),
            &got,
            &load_gray(field(&entry, "expected")),
        );
    }
}

#[test]
fn training_stretch_224x104_is_covered() {
    // The one resize every training image goes through must be in the golden set.
    let covered = manifest("resize_linear").iter().any(|e| {
        e["crop"]
            .as_array()
            .is_some_and(|c| c[2] == 224 && c[3] == 104)
            && target_size(e) == (224, 224)
    });
    assert!(
        covered,
        "manifest.json lacks the 224x104 -> 224x224 stretch"
    );
}

#[test]
fn resize_area_matches_cv2_exactly() {
    for entry in manifest("resize_area") {
        let (w, h) = target_size(&entry);
        let got = resize_area(&input_of(&entry), w, h);
        assert_same(
            field(&entry, "expected"),
            &got,
            &load_gray(field(&entry, "expected")),
        );
    }
}

#[test]
fn equalize_hist_matches_cv2_exactly() {
    for entry in manifest("equalize_hist") {
        let got = equalize_hist(&input_of(&entry));
        assert_same(
            field(&entry, "expected"),
            &got,
            &load_gray(field(&entry, "expected")),
        );
    }
}

#[test]
fn preprocess_matches_cv2_exactly() {
    // Inputs are 8-bit grey (for colour/16-bit/JPEG files: cv2's own decoding of them), so this
    // isolates the preprocessing from decoding differences.
    for entry in manifest("preprocess") {
        let got = preprocess(&input_of(&entry));
        assert_eq!(got.dimensions(), (INPUT_SIZE, INPUT_SIZE));
        assert_same(
            field(&entry, "expected"),
            &got,
            &load_gray(field(&entry, "expected")),
        );
    }
}

#[test]
fn file_to_network_image_matches_cv2_for_png() {
    // End to end from file bytes, for every file whose decoding is exact (all but JPEG).
    let pre_of = |input: &str| -> String {
        let stem = input.rsplit_once('.').map_or(input, |(s, _)| s);
        format!("{stem}.pre.png")
    };
    let inputs = manifest("decode")
        .into_iter()
        .filter(|e| e["exact"] == true)
        .map(|e| field(&e, "input").to_string());
    for input in inputs {
        let bytes = std::fs::read(fixture_dir().join(&input)).expect("fixture");
        let gray =
            decode_gray(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_same(&input, &preprocess(&gray), &load_gray(&pre_of(&input)));
    }
}

#[test]
fn network_input_is_nhwc_grey_over_255_in_three_channels() {
    let img = GrayImage::from_fn(INPUT_SIZE, INPUT_SIZE, |x, y| {
        image::Luma([((x + 3 * y) % 256) as u8])
    });
    let t = to_network_input(&img);
    assert_eq!(t.len(), 224 * 224 * 3);
    for (i, px) in t.chunks_exact(3).enumerate() {
        let v = f32::from(img.as_raw()[i]) / 255.0;
        assert_eq!(px, [v, v, v]);
    }
    assert_eq!(t[0], 0.0);
    let white = to_network_input(&GrayImage::from_pixel(2, 1, image::Luma([255])));
    assert_eq!(white, vec![1.0; 6]);
}

#[test]
fn identifiers_are_stable() {
    assert_eq!(PREPROCESSING_ID, "crop60-eqhist-v1");
    assert_eq!(INPUT_SIZE, 224);
}

#[test]
fn degenerate_sizes_do_not_panic() {
    let one = GrayImage::from_pixel(1, 1, image::Luma([77]));
    assert_eq!(
        resize_linear(&one, 5, 3),
        GrayImage::from_pixel(5, 3, image::Luma([77]))
    );
    assert_eq!(
        resize_area(&one, 3, 5),
        GrayImage::from_pixel(3, 5, image::Luma([77]))
    );
    assert_eq!(
        preprocess(&one),
        GrayImage::from_pixel(224, 224, image::Luma([77]))
    );
    let empty = GrayImage::new(0, 0);
    assert_eq!(resize_linear(&empty, 4, 4).dimensions(), (4, 4));
    assert_eq!(resize_area(&empty, 4, 4).dimensions(), (4, 4));
    assert_eq!(resize_linear(&one, 0, 4).dimensions(), (0, 4));
    assert_eq!(equalize_hist(&empty).dimensions(), (0, 0));
    assert_eq!(preprocess(&empty).dimensions(), (224, 224));
}
