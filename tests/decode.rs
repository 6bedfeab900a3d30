//! Decoding: `decode_gray` against `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` on the golden
//! fixtures (scripts/make_preprocess_fixtures.py), and refusal of bad or oversized files.

use crate::support::largest_allocation;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageEncoder};
use kneescreen::pipeline::decode::{decode_gray, sniff, DecodeError, Format, Limits};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode(bytes: &[u8]) -> Result<GrayImage, DecodeError> {
    decode_gray(bytes, &Limits::default())
}

/// (pixels that differ, largest difference)
fn compare(got: &GrayImage, want: &GrayImage) -> (usize, u8) {
    assert_eq!(got.dimensions(), want.dimensions());
    got.as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .filter(|&d| d > 0)
        .fold((0, 0), |(n, m), d| (n + 1, m.max(d)))
}

#[test]
fn decodes_like_cv2_imread_grayscale() {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).expect("manifest.json");
    let manifest: Vec<Value> = serde_json::from_str(&text).expect("valid manifest.json");
    let entries: Vec<&Value> = manifest.iter().filter(|e| e["kind"] == "decode").collect();
    assert!(entries.len() >= 20);
    for entry in entries {
        let input = entry["input"].as_str().expect("input");
        let expected = entry["expected"].as_str().expect("expected");
        let got = decode(&fixture(input)).unwrap_or_else(|e| panic!("{input}: {e}"));
        let want = image::open(fixture_dir().join(expected))
            .expect("reference")
            .into_luma8();
        let (n, max) = compare(&got, &want);
        if entry["exact"] == true {
            // PNG in all its variants (grey, 1-bit, 16-bit, RGB/RGBA/palette with and without
            // gamma, grey+alpha, interlaced, EXIF-rotated) reproduces libpng exactly.
            assert_eq!(n, 0, "{input}: {n} pixels differ from cv2 (max {max})");
        } else {
            // JPEG: zune-jpeg's IDCT is not libjpeg-turbo's, so a pixel may be off by one grey
            // level. Both return the Y plane, so there is no colour-conversion error on top.
            assert!(max <= 1, "{input}: {n} pixels differ from cv2, max {max}");
            println!(
                "{input}: {n} of {} pixels differ from cv2 by 1",
                want.as_raw().len()
            );
        }
    }
}

#[test]
fn sixteen_bit_keeps_the_high_byte() {
    // 0x12FF would round to 0x13 with (v + 128) / 257; cv2 (libpng strip_16) gives 0x12.
    let values: [u16; 4] = [0x12FF, 0x00FF, 0xFFFF, 0x8080];
    let samples: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&samples, 4, 1, image::ExtendedColorType::L16)
        .expect("encode");
    let gray = decode(&png).expect("16-bit PNG");
    assert_eq!(gray.as_raw(), &[0x12, 0x00, 0xFF, 0x80]);

    // And on the 16-bit fixture, against the `image` crate's own 16-bit reading.
    let bytes = fixture("gray16_160x120.png");
    let wide = image::load_from_memory(&bytes).expect("png").into_luma16();
    let gray = decode(&bytes).expect("16-bit fixture");
    let high: Vec<u8> = wide.as_raw().iter().map(|v| (v >> 8) as u8).collect();
    assert_eq!(gray.as_raw(), &high);
}

#[test]
fn sniffs_by_content() {
    assert_eq!(sniff(&fixture("grad_224x224.png")), Some(Format::Png));
    assert_eq!(sniff(&fixture("color_200x160.jpg")), Some(Format::Jpeg));
    let mut dicom = vec![0u8; 132];
    dicom[128..132].copy_from_slice(b"DICM");
    assert_eq!(sniff(&dicom), Some(Format::Dicom));
    assert_eq!(sniff(b"hello"), None);
    assert_eq!(sniff(&[]), None);
    // Recognised as DICOM and read as such: this one ends right after "DICM".
    assert!(matches!(
        decode(&dicom),
        Err(DecodeError::Truncated(Format::Dicom))
    ));
}

#[test]
fn empty_file_is_refused() {
    assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
}

#[test]
fn text_file_named_png_is_refused() {
    let err = decode(b"patient list\nname,id\n").unwrap_err();
    assert!(matches!(err, DecodeError::NotAnImage { .. }), "{err}");
    assert!(err.to_string().contains("\"patient"), "{err}");
    let err = decode(&[0u8, 1, 2, 3]).unwrap_err();
    assert!(err.to_string().contains("00 01 02 03"), "{err}");
}

#[test]
fn common_other_formats_are_named_with_what_to_do() {
    for (start, name) in [
        (&b"II*\0\x08\0\0\0"[..], "TIFF"),
        (b"MM\0*\0\0\0\x08", "TIFF"),
        (b"%PDF-1.7\n", "PDF"),
        (b"PK\x03\x04\x14\0", "ZIP"),
        (b"BM\x36\x10\x0e\0", "BMP"),
        (b"GIF89a\x01\0", "GIF"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "WebP"),
        (b"\0\0\0\x0cjP  \r\n", "JPEG 2000"),
        (
            b"\x08\0\x05\0CS\x0a\0",
            "DICOM data set without its file header",
        ),
    ] {
        let err = decode(start).unwrap_err();
        assert!(
            matches!(err, DecodeError::NotAnImage { .. }),
            "{name}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("export the image"),
            "{text}"
        );
    }
}

#[test]
fn truncated_png_is_refused() {
    let bytes = fixture("rgb_256x240.png");
    let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated(Format::Png)), "{err}");
    assert!(err.to_string().contains("truncated"));
}

#[test]
fn truncated_jpeg_is_refused() {
    let bytes = fixture("color_200x160.jpg");
    let err = decode(&bytes[..bytes.len() * 3 / 5]).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated(Format::Jpeg)), "{err}");
}

#[test]
fn every_cut_of_a_file_gives_an_error_not_a_panic() {
    for name in [
        "bilevel_64x48.png",
        "interlaced_rgb_37x29.png",
        "exif5_64x48.jpg",
        "progressive_150x120.jpg",
    ] {
        let bytes = fixture(name);
        // A PNG cut only in its final IEND chunk still holds the whole image: not counted.
        let complete = if name.ends_with(".png") {
            bytes.len() - 12
        } else {
            bytes.len()
        };
        for cut in (0..complete).step_by(3) {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "{name} cut at {cut} decoded"
            );
        }
    }
    // Garbage after a valid signature.
    let mut junk = b"\x89PNG\r\n\x1a\n".to_vec();
    junk.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    assert!(decode(&junk).is_err());
    let mut junk = vec![0xFF, 0xD8, 0xFF];
    junk.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    assert!(decode(&junk).is_err());
}

/// A PNG whose header claims `width`×`height` (valid CRCs), followed by a tiny IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(kind);
        out.extend(data);
        out.extend(crc32(&[kind.as_slice(), data].concat()).to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn oversized_png_header_is_refused_before_allocating() {
    let err = refused_as_60000_square(&png_claiming(60000, 60000));
    assert!(err.to_string().contains("60000×60000"), "{err}");
}

/// Decodes `bytes`, which claim a 60000×60000 image; checks it is refused as too large without
/// a big allocation.
fn refused_as_60000_square(bytes: &[u8]) -> DecodeError {
    largest_allocation::reset();
    let err = decode(bytes).unwrap_err();
    let largest = largest_allocation::largest();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 60000,
                height: 60000
            }
        ),
        "{err}"
    );
    assert!(
        largest < 16 << 20,
        "allocated {largest} bytes for a refused image"
    );
    err
}

#[test]
fn oversized_jpeg_header_is_refused_before_allocating() {
    // Patch the frame header (SOF0: FF C0, length, precision, height, width) of a real JPEG.
    let mut jpeg = fixture("color_200x160.jpg");
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG");
    jpeg[sof + 5..sof + 7].copy_from_slice(&60000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&60000u16.to_be_bytes());
    refused_as_60000_square(&jpeg);
}

#[test]
fn limits_are_configurable() {
    let bytes = fixture("rgb_256x240.png");
    let small = Limits {
        max_width: 255,
        ..Limits::default()
    };
    assert!(matches!(
        decode_gray(&bytes, &small),
        Err(DecodeError::TooLarge {
            width: 256,
            height: 240
        })
    ));
    let few_pixels = Limits {
        max_pixels: 256 * 240 - 1,
        ..Limits::default()
    };
    assert!(decode_gray(&bytes, &few_pixels).is_err());
    let tiny_file = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        decode_gray(&bytes, &tiny_file),
        Err(DecodeError::FileTooLarge { max: 100, .. })
    ));
    assert!(decode_gray(&bytes, &Limits::default()).is_ok());
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        decode(&[]).unwrap_err(),
        decode(b"text").unwrap_err(),
        decode(&png_claiming(60000, 60000)).unwrap_err(),
        decode(&png_claiming(0, 10)).unwrap_err(),
        decode(&fixture("rgb_256x240.png")[..300]).unwrap_err(),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
    }
}
