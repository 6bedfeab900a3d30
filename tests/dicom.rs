//! DICOM decoding on files the tests write themselves (tests/dicom_writer): encodings, the
//! stored value → grey mapping, multi-frame, damaged and unsupported files, limits, privacy.

use crate::support::dicom_writer;
use crate::support::largest_allocation;
use crate::support::util::{synthetic_knee, XorShift32};

use dicom_writer::{Encoding, Spec};
use image::{GrayImage, ImageEncoder};
use kneescreen::pipeline::decode::dicom::identity::read_patient_identity;
use kneescreen::pipeline::decode::dicom::{decode_dicom, policy, DicomImage, MULTI_FRAME_WARNING};
use kneescreen::pipeline::decode::{decode, decode_gray, sniff, DecodeError, Format, Limits};
use kneescreen::pipeline::digest::sha256_hex;
use kneescreen::pipeline::{analyze, AnalysisError};
use kneescreen::record::{ReferReason, Side, SpacingSource};

const SMALL_ENOUGH: usize = 64 << 20;

fn dicom(bytes: &[u8]) -> Result<DicomImage, DecodeError> {
    decode_dicom(bytes, &Limits::default())
}

fn ok(bytes: &[u8]) -> DicomImage {
    dicom(bytes).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

/// Deterministic pseudo-random stored values in `lo..=hi`, with a gradient underneath so that
/// JPEG has something smooth to code.
fn samples(n: usize, lo: i32, hi: i32, seed: u32) -> Vec<i32> {
    let span = (hi - lo) as u64 + 1;
    let mut rng = XorShift32::new(seed.wrapping_mul(2654435761).wrapping_add(12345));
    (0..n)
        .map(|i| {
            let state = rng.next_u32();
            let v = if i % 3 == 0 {
                u64::from(state) % span
            } else {
                (i as u64 * span) / n as u64
            };
            lo + v as i32
        })
        .collect()
}

fn pixel_count(spec: &Spec) -> usize {
    usize::from(spec.rows)
        * usize::from(spec.columns)
        * usize::from(spec.samples_per_pixel)
        * spec.frames as usize
}

/// The PS3.3 C.11.2.1.2.1 LINEAR function to 0..255, written out independently of the module.
fn linear_window(x: f64, c: f64, w: f64) -> u8 {
    let y = if x <= c - 0.5 - (w - 1.0) / 2.0 {
        0.0
    } else if x > c - 0.5 + (w - 1.0) / 2.0 {
        255.0
    } else {
        ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
    };
    y.round() as u8
}

fn scale_full_range(x: f64, lo: f64, hi: f64) -> u8 {
    ((x - lo) / (hi - lo) * 255.0).round() as u8
}

fn max_diff(a: &GrayImage, b: &GrayImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn png_bytes(gray: &GrayImage) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            gray.as_raw(),
            gray.width(),
            gray.height(),
            image::ExtendedColorType::L8,
        )
        .expect("encode PNG");
    png
}

// ---------------------------------------------------------------------------------------------
// Round trips and the pixel mapping

#[test]
fn eight_bit_png_wrapped_as_dicom_decodes_to_the_identical_image() {
    let spec = Spec {
        rows: 120,
        columns: 96,
        bits_allocated: 8,
        bits_stored: 8,
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 255, 1);
    let gray = GrayImage::from_raw(96, 120, values.iter().map(|&v| v as u8).collect()).unwrap();
    let from_png = decode_gray(&png_bytes(&gray), &Limits::default()).expect("png");
    assert_eq!(from_png, gray);
    for encoding in [
        Encoding::Explicit,
        Encoding::Implicit,
        Encoding::Deflated,
        Encoding::BigEndian,
        Encoding::Rle,
    ] {
        let file = dicom_writer::write(
            &Spec {
                encoding,
                ..spec.clone()
            },
            &values,
        );
        let from_dicom =
            decode_gray(&file, &Limits::default()).unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
        // Identical network input → identical grade and probabilities downstream.
        assert_eq!(from_dicom, from_png, "{encoding:?}");
    }
    // A full-range window (center 128, width 256) is the identity on 8-bit values too.
    let windowed = Spec {
        windows: vec![(128.0, 256.0)],
        ..spec.clone()
    };
    assert_eq!(ok(&dicom_writer::write(&windowed, &values)).gray, gray);
}

#[test]
fn sixteen_bit_monochrome1_with_window_maps_back_to_the_8_bit_values() {
    // The 8-bit image g is stored inverted (MONOCHROME1) and stretched: v = (255 − g)·200 + 1000.
    // The window covering exactly that range must give g back, within ±1.
    let spec = Spec {
        rows: 64,
        columns: 48,
        bits_allocated: 16,
        bits_stored: 16,
        photometric: "MONOCHROME1",
        windows: vec![(1000.0 + 255.0 * 200.0 / 2.0, 255.0 * 200.0)],
        ..Spec::default()
    };
    let g = samples(pixel_count(&spec), 0, 255, 2);
    let stored: Vec<i32> = g.iter().map(|&g| (255 - g) * 200 + 1000).collect();
    let image = ok(&dicom_writer::write(&spec, &stored));
    let want = GrayImage::from_raw(48, 64, g.iter().map(|&v| v as u8).collect()).unwrap();
    assert!(max_diff(&image.gray, &want) <= 1);
    assert!(image.warnings.is_empty(), "{:?}", image.warnings);
}

#[test]
fn without_window_the_full_stored_range_is_scaled_to_8_bits() {
    for (bits_stored, bits_allocated) in [(8u16, 8u16), (12, 16), (16, 16)] {
        let max = (1i32 << bits_stored) - 1;
        let spec = Spec {
            bits_allocated,
            bits_stored,
            ..Spec::default()
        };
        let mut values = samples(pixel_count(&spec), 0, max, 3);
        values[0] = 0;
        values[1] = max;
        let image = ok(&dicom_writer::write(&spec, &values));
        for (got, &v) in image.gray.as_raw().iter().zip(&values) {
            assert_eq!(
                *got,
                scale_full_range(v.into(), 0.0, max.into()),
                "{bits_stored} bits, {v}"
            );
        }
        assert_eq!(image.gray.as_raw()[..2], [0, 255]);
        assert_eq!(image.info.bits_stored, bits_stored);
    }
}

#[test]
fn monochrome1_is_inverted() {
    let spec = Spec {
        bits_allocated: 8,
        bits_stored: 8,
        photometric: "MONOCHROME1",
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 255, 4);
    let image = ok(&dicom_writer::write(&spec, &values));
    let want: Vec<u8> = values.iter().map(|&v| 255 - v as u8).collect();
    assert_eq!(image.gray.as_raw(), &want);
    assert_eq!(image.info.photometric, "MONOCHROME1");
}

#[test]
fn the_first_window_is_applied_with_the_linear_function() {
    let spec = Spec {
        windows: vec![(2048.0, 1024.0), (500.0, 100.0)],
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 4095, 5);
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(*got, linear_window(v.into(), 2048.0, 1024.0), "stored {v}");
    }
    // Width 1 is a threshold at the center.
    let spec = Spec {
        windows: vec![(2000.0, 1.0)],
        ..Spec::default()
    };
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(*got, if f64::from(v) <= 1999.5 { 0 } else { 255 });
    }
}

#[test]
fn linear_exact_and_sigmoid_windows() {
    let values = samples(24 * 32, 0, 4095, 6);
    let exact = Spec {
        windows: vec![(1500.0, 800.0)],
        voi_function: Some("LINEAR_EXACT"),
        ..Spec::default()
    };
    let image = ok(&dicom_writer::write(&exact, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        let x = f64::from(v);
        let y = if x <= 1100.0 {
            0.0
        } else if x > 1900.0 {
            255.0
        } else {
            ((x - 1500.0) / 800.0 + 0.5) * 255.0
        };
        assert_eq!(*got, y.round() as u8);
    }
    let sigmoid = Spec {
        voi_function: Some("SIGMOID"),
        ..exact
    };
    let image = ok(&dicom_writer::write(&sigmoid, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        let y = 255.0 / (1.0 + (-4.0 * (f64::from(v) - 1500.0) / 800.0).exp());
        assert_eq!(*got, y.round() as u8);
    }
}

#[test]
fn rescale_slope_and_intercept_come_before_the_window() {
    // CT-like: HU = 2·stored − 1024, window in HU.
    let spec = Spec {
        rescale: Some((2.0, -1024.0)),
        windows: vec![(40.0, 400.0)],
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 4095, 7);
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(
            *got,
            linear_window(2.0 * f64::from(v) - 1024.0, 40.0, 400.0)
        );
    }
    // Without a window, the rescaled ends of the stored range span 0..255; a negative slope
    // reverses the scale.
    let spec = Spec {
        rescale: Some((-0.5, 3000.0)),
        ..Spec::default()
    };
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        let x = -0.5 * f64::from(v) + 3000.0;
        assert_eq!(*got, scale_full_range(x, 3000.0 - 0.5 * 4095.0, 3000.0));
    }
}

#[test]
fn signed_sixteen_bit() {
    let spec = Spec {
        bits_stored: 16,
        signed: true,
        ..Spec::default()
    };
    let mut values = samples(pixel_count(&spec), -32768, 32767, 8);
    values[0] = -32768;
    values[1] = 32767;
    values[2] = -1;
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(
            *got,
            scale_full_range(v.into(), -32768.0, 32767.0),
            "stored {v}"
        );
    }
    assert_eq!(image.gray.as_raw()[..2], [0, 255]);
    // With a window around zero: negative values must stay negative (sign extension).
    let spec = Spec {
        windows: vec![(0.0, 2000.0)],
        ..spec
    };
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(*got, linear_window(v.into(), 0.0, 2000.0), "stored {v}");
    }
    // Signed 12 bits in 16 allocated.
    let spec = Spec {
        bits_stored: 12,
        signed: true,
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), -2048, 2047, 9);
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(
            *got,
            scale_full_range(v.into(), -2048.0, 2047.0),
            "stored {v}"
        );
    }
}

#[test]
fn voi_lut_sequence_is_used_when_there_is_no_window() {
    // A 4096-entry 16-bit LUT: a square-root curve.
    let lut: Vec<u16> = (0..4096u32)
        .map(|i| ((f64::from(i) / 4095.0).sqrt() * 65535.0).round() as u16)
        .collect();
    let spec = Spec {
        voi_lut: Some((0, 16, lut.clone())),
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 4095, 10);
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        let want = (f64::from(lut[v as usize]) / 65535.0 * 255.0).round() as u8;
        assert_eq!(*got, want, "stored {v}");
    }
    // A window, when present too, wins (first window if several; then the LUT).
    let spec = Spec {
        windows: vec![(2048.0, 4096.0)],
        ..spec
    };
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        assert_eq!(*got, linear_window(v.into(), 2048.0, 4096.0));
    }
}

#[test]
fn a_lut_descriptor_of_any_vr_and_count_never_stops_the_decoder() {
    // Explicit VR files may store the LUT Descriptor as US, SS, UL, SL or IS, so its count can
    // read as 65536 (or 0, US's way of saying 65536), negative, or beyond 65536. A usable table is
    // used; anything else is ignored (the full stored range then applies); never a panic.
    use dicom_core::value::{DataSetSequence, PrimitiveValue};
    use dicom_core::{DataElement, Length, VR};
    use dicom_dictionary_std::tags;
    let spec = Spec::default(); // 12 bits stored
    let values = samples(pixel_count(&spec), 0, 4095, 11);
    let descriptor = |vr: VR, count: i64| match vr {
        VR::UL => PrimitiveValue::U32(vec![count as u32, 0, 16].into()),
        VR::SL => PrimitiveValue::I32(vec![count as i32, 0, 16].into()),
        _ => PrimitiveValue::U16(vec![count as u16, 0, 16].into()),
    };
    for (vr, count) in [
        (VR::UL, 65536),
        (VR::SL, 65536),
        (VR::US, 0),
        (VR::SL, -1),
        (VR::UL, 70000),
    ] {
        for entries in [4096u32, 65536] {
            // Reversed: stored v -> 65535 - v * (65535 / (entries - 1)), clamped at the end.
            let lut: Vec<u16> = (0..entries)
                .map(|i| 65535 - (u64::from(i) * 65535 / u64::from(entries - 1)) as u16)
                .collect();
            let mut item = dicom_object::InMemDicomObject::new_empty();
            item.put(DataElement::new(
                tags::LUT_DESCRIPTOR,
                vr,
                descriptor(vr, count),
            ));
            item.put(DataElement::new(
                tags::LUT_DATA,
                VR::OW,
                PrimitiveValue::U16(lut.clone().into()),
            ));
            let mut obj = dicom_writer::header(&spec);
            obj.put(DataElement::new(
                tags::VOILUT_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(vec![item], Length::UNDEFINED),
            ));
            let file = dicom_writer::write_with_header(obj, &spec, &values);
            let image = dicom(&file)
                .unwrap_or_else(|e| panic!("{vr:?} count {count}, {entries} entries: {e}"));
            let table_used = entries == 65536 && matches!(count, 0 | 65536);
            for (got, &v) in image.gray.as_raw().iter().zip(&values) {
                let want = if table_used {
                    (f64::from(lut[v as usize]) / 65535.0 * 255.0).round() as u8
                } else {
                    scale_full_range(v.into(), 0.0, 4095.0)
                };
                assert_eq!(
                    *got, want,
                    "{vr:?} count {count}, {entries} entries: stored {v}"
                );
            }
        }
    }
}

#[test]
fn modality_lut_sequence_replaces_the_rescale() {
    // A 12-bit modality LUT that reverses the values and outputs 10 bits; no window: the full
    // output range of the LUT (0..1023) spans 0..255.
    let lut: Vec<u16> = (0..4096u32).map(|i| ((4095 - i) / 4) as u16).collect();
    let spec = Spec {
        modality_lut: Some((0, 10, lut.clone())),
        rescale: Some((3.0, 7.0)), // ignored in favour of the LUT
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 4095, 27);
    let image = ok(&dicom_writer::write(&spec, &values));
    for (got, &v) in image.gray.as_raw().iter().zip(&values) {
        let want = scale_full_range(lut[v as usize].into(), 0.0, 1023.0);
        assert_eq!(*got, want, "stored {v}");
    }
}

#[test]
fn an_image_using_a_sliver_of_the_range_without_window_gets_a_warning() {
    let spec = Spec {
        bits_stored: 16,
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 4095, 11);
    let image = ok(&dicom_writer::write(&spec, &values));
    assert_eq!(image.warnings.len(), 1, "{:?}", image.warnings);
    assert!(image.warnings[0].contains("no display window"));
}

// ---------------------------------------------------------------------------------------------
// Encodings

#[test]
fn rle_lossless_and_big_endian_match_the_little_endian_file() {
    for (bits_allocated, bits_stored, signed) in
        [(8u16, 8u16, false), (16, 12, false), (16, 16, true)]
    {
        let spec = Spec {
            rows: 50,
            columns: 41,
            bits_allocated,
            bits_stored,
            signed,
            windows: vec![(100.0, 3000.0)],
            ..Spec::default()
        };
        let (lo, hi) = if signed {
            (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1)
        } else {
            (0, (1 << bits_stored) - 1)
        };
        let mut values = samples(pixel_count(&spec), lo, hi, 12);
        // Runs, so that PackBits has something to compress.
        for v in values.iter_mut().skip(200).take(300) {
            *v = hi / 2;
        }
        let native = ok(&dicom_writer::write(&spec, &values));
        let big_endian = Spec {
            encoding: Encoding::BigEndian,
            ..spec.clone()
        };
        let big_endian = ok(&dicom_writer::write(&big_endian, &values));
        assert_eq!(
            big_endian.gray, native.gray,
            "big endian {bits_allocated}/{bits_stored}"
        );
        let rle = dicom_writer::write(
            &Spec {
                encoding: Encoding::Rle,
                ..spec.clone()
            },
            &values,
        );
        let rle = ok(&rle);
        assert_eq!(rle.gray, native.gray, "{bits_allocated}/{bits_stored}");
        assert_eq!(rle.info.transfer_syntax, dicom_writer::RLE_LOSSLESS);
    }
}

#[test]
fn jpeg_baseline_decodes_like_the_same_jpeg_file() {
    let spec = Spec {
        rows: 96,
        columns: 80,
        bits_allocated: 8,
        bits_stored: 8,
        encoding: Encoding::JpegBaseline,
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 255, 13);
    let file = dicom_writer::write(&spec, &values);
    let image = ok(&file);
    assert_eq!(image.info.transfer_syntax, dicom_writer::JPEG_BASELINE);
    // The same JPEG through the PNG/JPEG path (zune-jpeg): the IDCTs differ by at most a grey level.
    let jpeg = dicom_writer::jpeg_frame(&spec, &values);
    let direct = decode_gray(&jpeg, &Limits::default()).expect("jpeg");
    let diff = max_diff(&image.gray, &direct);
    assert!(
        diff <= 1,
        "JPEG in DICOM differs from the plain JPEG by {diff}"
    );
}

#[test]
fn jpeg_lossless_matches_the_uncompressed_file() {
    for (bits_stored, signed) in [(8u16, false), (12, false), (16, false), (16, true)] {
        let spec = Spec {
            rows: 40,
            columns: 33,
            bits_allocated: if bits_stored == 8 { 8 } else { 16 },
            bits_stored,
            signed,
            windows: vec![(if signed { 0.0 } else { 1500.0 }, 3000.0)],
            ..Spec::default()
        };
        let (lo, hi) = if signed {
            (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1)
        } else {
            (0, (1 << bits_stored) - 1)
        };
        let mut values = samples(pixel_count(&spec), lo, hi, 26);
        values[0] = lo;
        values[1] = hi;
        let native = ok(&dicom_writer::write(&spec, &values));
        let lossless = Spec {
            encoding: Encoding::JpegLosslessSv1,
            ..spec
        };
        let image = dicom(&dicom_writer::write(&lossless, &values))
            .unwrap_or_else(|e| panic!("{bits_stored} bits: {e}"));
        assert_eq!(
            image.gray, native.gray,
            "{bits_stored} bits, signed {signed}"
        );
    }
}

#[test]
fn rgb_is_mixed_to_grey() {
    let spec = Spec {
        rows: 16,
        columns: 16,
        bits_allocated: 8,
        bits_stored: 8,
        samples_per_pixel: 3,
        photometric: "RGB",
        ..Spec::default()
    };
    let values = samples(pixel_count(&spec), 0, 255, 14);
    let image = ok(&dicom_writer::write(&spec, &values));
    let want: Vec<u8> = values
        .chunks(3)
        .map(|p| ((4899 * p[0] + 9617 * p[1] + 1868 * p[2] + 8192) >> 14) as u8)
        .collect();
    assert_eq!(image.gray.as_raw(), &want);
    assert_eq!(image.warnings.len(), 1, "{:?}", image.warnings);
    assert!(image.warnings[0].contains("colour (RGB)"));
}

/// Not a radiograph by its header: graded, with a warning that names why the grade means little.
#[test]
fn other_modalities_are_graded_with_a_warning() {
    for (modality, warned) in [
        ("MR", true),
        ("CT", true),
        ("US", true),
        ("DX", false),
        ("CR", false),
        ("OT", false),
    ] {
        let spec = Spec {
            modality,
            ..Spec::default()
        };
        let image = ok(&dicom_writer::write(
            &spec,
            &samples(pixel_count(&spec), 0, 4095, 16),
        ));
        let says = format!("the DICOM modality is {modality}, not a radiograph");
        assert_eq!(
            image.warnings.iter().any(|w| w.contains(&says)),
            warned,
            "{modality}: {:?}",
            image.warnings
        );
    }
}

/// Pixel spacing tells a full or bilateral radiograph from a single-knee crop.
#[test]
fn an_image_wider_than_one_knee_is_graded_with_a_warning() {
    for (spacing, warned) in [(0.15, false), (10.0, true)] {
        // 24 × 32 pixels: 3.6 × 4.8 mm, or 24 × 32 cm.
        let spec = Spec {
            imager_pixel_spacing: Some([spacing, spacing]),
            ..Spec::default()
        };
        let image = ok(&dicom_writer::write(
            &spec,
            &samples(pixel_count(&spec), 0, 4095, 17),
        ));
        let says = "the image covers 24 × 32 cm: the model was trained on single-knee joint crops";
        let warning = policy::more_than_one_knee(&image.info);
        assert_eq!(
            warning.as_ref().is_some_and(|w| w.contains(says)),
            warned,
            "{spacing}: {warning:?}"
        );
    }
}

#[test]
fn multi_frame_uses_the_first_frame_with_a_warning() {
    for encoding in [Encoding::Explicit, Encoding::Rle, Encoding::JpegBaseline] {
        let spec = Spec {
            bits_allocated: 8,
            bits_stored: 8,
            frames: 3,
            encoding,
            ..Spec::default()
        };
        let n = pixel_count(&spec) / 3;
        let mut values = samples(n, 0, 255, 15);
        values.extend(std::iter::repeat_n(0, n)); // frames 2 and 3 black
        values.extend(std::iter::repeat_n(0, n));
        let image = ok(&dicom_writer::write(&spec, &values));
        let single = Spec {
            frames: 1,
            ..spec.clone()
        };
        let first = ok(&dicom_writer::write(&single, &values[..n]));
        assert_eq!(image.gray, first.gray, "{encoding:?}");
        assert_eq!(
            image.warnings,
            vec![MULTI_FRAME_WARNING.to_string()],
            "{encoding:?}"
        );
        assert_eq!(image.info.frames, 3);
    }
}

// ---------------------------------------------------------------------------------------------
// Header facts, sniffing, the decode() API

#[test]
fn header_facts_are_kept_and_nothing_else() {
    let spec = Spec {
        image_laterality: Some("R"),
        laterality: Some("L"),
        view_position: Some("PA"),
        imager_pixel_spacing: Some([0.15, 0.16]),
        patient: true,
        ..Spec::default()
    };
    let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 16));
    let info = ok(&file).info;
    assert_eq!(
        info.study_instance_uid.as_deref(),
        Some(dicom_writer::STUDY_UID)
    );
    assert_eq!(
        info.series_instance_uid.as_deref(),
        Some(dicom_writer::SERIES_UID)
    );
    assert_eq!(
        info.sop_instance_uid.as_deref(),
        Some(dicom_writer::SOP_UID)
    );
    assert_eq!(
        info.sop_class_uid.as_deref(),
        Some(dicom_writer::DX_FOR_PRESENTATION)
    );
    assert_eq!(info.transfer_syntax, dicom_writer::EXPLICIT_VR_LE);
    assert_eq!(info.modality.as_deref(), Some("DX"));
    assert_eq!(info.laterality.as_deref(), Some("R")); // ImageLaterality first
    assert_eq!(info.view_position.as_deref(), Some("PA"));
    assert_eq!(info.pixel_spacing_mm, Some([0.15, 0.16]));
    assert_eq!(
        info.pixel_spacing_source,
        Some(SpacingSource::ImagerPixelSpacing)
    );
    assert_eq!((info.rows, info.columns, info.frames), (32, 24, 1));

    let spec = Spec {
        laterality: Some("L"),
        pixel_spacing: Some([0.2, 0.2]),
        imager_pixel_spacing: Some([0.15, 0.16]),
        ..Spec::default()
    };
    let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 16));
    let info = ok(&file).info;
    assert_eq!(info.laterality.as_deref(), Some("L"));
    assert_eq!(info.pixel_spacing_mm, Some([0.2, 0.2]));
    assert_eq!(info.pixel_spacing_source, Some(SpacingSource::PixelSpacing));

    let json = serde_json::to_value(&info).expect("serialize");
    let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    for key in keys {
        assert!(
            !key.contains("patient") && !key.contains("birth") && !key.contains("name"),
            "{key}"
        );
    }
}

#[test]
fn recognised_by_content_and_reported_by_decode() {
    let spec = Spec::default();
    let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 17));
    assert_eq!(sniff(&file), Some(Format::Dicom));
    let decoded = decode(&file, &Limits::default()).expect("dicom");
    assert_eq!(decoded.format, Format::Dicom);
    assert_eq!(decoded.dicom.as_ref().map(|i| i.rows), Some(32));
    assert_eq!(
        decoded.gray,
        decode_gray(&file, &Limits::default()).unwrap()
    );

    // Without the 128-byte preamble (the file starts with "DICM"): the same image and facts.
    let bare = &file[128..];
    assert_eq!(sniff(bare), Some(Format::Dicom));
    let from_bare = decode(bare, &Limits::default()).expect("dicom without preamble");
    assert_eq!(from_bare.gray, decoded.gray);
    assert_eq!(from_bare.dicom, decoded.dicom);
    for cut in (0..bare.len()).step_by(5) {
        assert!(decode(&bare[..cut], &Limits::default()).is_err());
    }

    let png = png_bytes(&GrayImage::from_pixel(8, 8, image::Luma([7])));
    let decoded = decode(&png, &Limits::default()).expect("png");
    assert_eq!(decoded.format, Format::Png);
    assert!(decoded.dicom.is_none() && decoded.warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn jpeg_2000_and_jpeg_ls_are_refused_by_name() {
    let spec = Spec {
        encoding: Encoding::Jpeg2000Garbage,
        ..Spec::default()
    };
    let file = dicom_writer::write(&spec, &vec![0; pixel_count(&spec)]);
    let err = dicom(&file).unwrap_err();
    assert!(
        matches!(err, DecodeError::DicomUnsupportedSyntax { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "DICOM JPEG 2000 (1.2.840.10008.1.2.4.90) is not supported: export the image \
         uncompressed or as JPEG baseline"
    );
    let spec = Spec {
        encoding: Encoding::JpegLsGarbage,
        ..Spec::default()
    };
    let file = dicom_writer::write(&spec, &vec![0; pixel_count(&spec)]);
    let err = decode_gray(&file, &Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("JPEG-LS (1.2.840.10008.1.2.4.80)"),
        "{err}"
    );
}

#[test]
fn an_object_without_pixel_data_is_refused_with_its_sop_class() {
    let err = dicom(&dicom_writer::structured_report(false)).unwrap_err();
    assert!(matches!(err, DecodeError::DicomNoPixelData { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("Basic Text SR"), "{message}");
    assert!(message.contains(dicom_writer::BASIC_TEXT_SR), "{message}");
}

#[test]
fn unsupported_pixel_formats_are_refused_with_the_reason() {
    let spec = Spec {
        photometric: "PALETTE COLOR",
        ..Spec::default()
    };
    let err = dicom(&dicom_writer::write(&spec, &vec![0; pixel_count(&spec)])).unwrap_err();
    assert!(err.to_string().contains("PALETTE COLOR"), "{err}");
    let spec = Spec {
        bits_allocated: 16,
        bits_stored: 6,
        ..Spec::default()
    };
    let err = dicom(&dicom_writer::write(&spec, &vec![0; pixel_count(&spec)])).unwrap_err();
    assert!(err.to_string().contains("6 bits stored"), "{err}");
}

#[test]
fn truncated_files_are_refused() {
    let spec = Spec {
        rows: 64,
        columns: 64,
        patient: true,
        ..Spec::default()
    };
    let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 18));
    // Cut in the pixel data.
    let err = dicom(&file[..file.len() - 1000]).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated(Format::Dicom)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the DICOM file is truncated (it ends before the image data does)"
    );
    // Cut in the file meta information, and in the data set header (inside the UIDs).
    let in_meta = 140;
    let in_header = dicom_writer::find(&file, dicom_writer::SERIES_UID.as_bytes()).unwrap() + 5;
    for cut in [in_meta, in_header] {
        let err = dicom(&file[..cut]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated(Format::Dicom)),
            "cut at {cut}: {err}"
        );
    }
    // Only the preamble and "DICM".
    let err = dicom(&file[..132]).unwrap_err();
    assert!(
        matches!(err, DecodeError::Corrupt { .. } | DecodeError::Truncated(_)),
        "{err}"
    );
}

/// Every encoding, cut at every few bytes: always an error, never a panic or a picture.
#[test]
fn every_cut_of_a_file_gives_an_error_not_a_panic() {
    for encoding in [
        Encoding::Explicit,
        Encoding::Implicit,
        Encoding::Deflated,
        Encoding::Rle,
        Encoding::JpegBaseline,
        Encoding::JpegLosslessSv1,
    ] {
        let spec = Spec {
            rows: 12,
            columns: 10,
            bits_allocated: 8,
            bits_stored: 8,
            windows: vec![(128.0, 256.0)],
            encoding,
            ..Spec::default()
        };
        let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 255, 19));
        ok(&file);
        for cut in 0..file.len() {
            assert!(
                dicom(&file[..cut]).is_err(),
                "{encoding:?} cut at {cut} decoded"
            );
        }
    }
}

/// Damage anywhere in the file (each byte in turn set to a few values) may decode or not, but
/// must never panic.
#[test]
fn damaged_bytes_never_panic() {
    for encoding in [
        Encoding::Explicit,
        Encoding::Implicit,
        Encoding::Rle,
        Encoding::JpegBaseline,
        Encoding::JpegLosslessSv1,
    ] {
        let spec = Spec {
            rows: 8,
            columns: 6,
            bits_allocated: 8,
            bits_stored: 8,
            frames: if encoding == Encoding::Rle { 2 } else { 1 },
            windows: vec![(128.0, 256.0)],
            voi_lut: Some((0, 8, (0..256).collect())),
            encoding,
            ..Spec::default()
        };
        let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 255, 20));
        for i in 128..file.len() {
            for value in [0x00, 0xFF, 0x7F, file[i] ^ 0x01, file[i].wrapping_add(0x40)] {
                let mut damaged = file.clone();
                damaged[i] = value;
                let _ = dicom(&damaged);
            }
        }
    }
}

#[test]
fn jpeg_and_rle_data_that_disagree_with_the_header_are_refused() {
    // A JPEG bigger than Rows × Columns would overflow the decoder's output buffer.
    let spec = Spec {
        rows: 16,
        columns: 16,
        bits_allocated: 8,
        bits_stored: 8,
        encoding: Encoding::JpegBaseline,
        ..Spec::default()
    };
    let big = Spec {
        rows: 40,
        columns: 40,
        ..spec.clone()
    };
    let jpeg = dicom_writer::jpeg_frame(&big, &samples(1600, 0, 255, 21));
    let mut obj = dicom_writer::header(&spec);
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::value::PixelFragmentSequence::new(Vec::<u32>::new(), vec![jpeg]),
    ));
    let file = dicom_writer::write_object(obj, dicom_writer::JPEG_BASELINE);
    let err = dicom(&file).unwrap_err();
    assert!(err.to_string().contains("40×40"), "{err}");

    // An RLE segment that decodes to fewer bytes than the frame holds.
    let rle_spec = Spec {
        encoding: Encoding::Rle,
        ..spec
    };
    let mut rle = dicom_writer::rle_frame(&rle_spec, &samples(256, 0, 255, 22));
    rle.truncate(rle.len() - 40);
    let mut obj = dicom_writer::header(&rle_spec);
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::value::PixelFragmentSequence::new(Vec::<u32>::new(), vec![rle]),
    ));
    let file = dicom_writer::write_object(obj, dicom_writer::RLE_LOSSLESS);
    assert!(dicom(&file).is_err());
}

#[test]
fn a_header_claiming_60000_by_60000_is_refused_before_allocation() {
    let spec = Spec {
        rows: 60000,
        columns: 60000,
        ..Spec::default()
    };
    // Tiny pixel data: the claim alone would need 7.2 GB.
    let mut obj = dicom_writer::header(&spec);
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        dicom_core::VR::OW,
        dicom_core::value::PrimitiveValue::U16(vec![0u16; 64].into()),
    ));
    let file = dicom_writer::write_object(obj, dicom_writer::EXPLICIT_VR_LE);
    let err = dicom(&file).unwrap_err();
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
    assert!(largest_allocation::largest() < SMALL_ENOUGH);

    // And the configured limits apply to DICOM like to PNG.
    let spec = Spec::default();
    let file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 23));
    let limits = Limits {
        max_width: 20,
        ..Limits::default()
    };
    let err = decode_dicom(&file, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                width: 24,
                height: 32
            }
        ),
        "{err}"
    );
}

#[test]
fn an_element_claiming_gigabytes_is_refused_before_allocation() {
    let spec = Spec::default();
    let mut file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 24));
    // PixelData (7FE0,0010) OW: its 4-byte length follows the 2 reserved bytes.
    let at = dicom_writer::find(&file, &[0xE0, 0x7F, 0x10, 0x00, b'O', b'W']).unwrap();
    file[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = dicom(&file).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated(Format::Dicom)),
        "{err}"
    );
    // Same for an ordinary element in the header (Modality, set to a 4 GB UN).
    let mut file = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 24));
    let at = dicom_writer::find(&file, &[0x08, 0x00, 0x60, 0x00, b'C', b'S']).unwrap();
    file[at + 4..at + 6].copy_from_slice(b"UN");
    let err = dicom(&file).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated(_) | DecodeError::Corrupt { .. }),
        "{err}"
    );
    assert!(largest_allocation::largest() < SMALL_ENOUGH);
}

// ---------------------------------------------------------------------------------------------
// Privacy

/// Patient name, ID and birth date are planted in good and broken files; they must not appear
/// in the serialized header facts, in any warning, nor in any error message.
#[test]
fn patient_identity_never_leaves_the_decoder() {
    let planted = dicom_writer::PLANTED;
    let mut texts: Vec<String> = Vec::new();
    let spec = Spec {
        bits_stored: 16,
        frames: 2,
        patient: true,
        image_laterality: Some("L"),
        ..Spec::default()
    };
    let good = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 4095, 25));
    let image = ok(&good);
    assert!(!image.warnings.is_empty());
    texts.push(serde_json::to_string(&image.info).expect("serialize"));
    texts.push(format!("{:?}", image.info));
    texts.extend(image.warnings.iter().cloned());
    let decoded = decode(&good, &Limits::default()).expect("decode");
    texts.push(serde_json::to_string(&decoded.dicom).expect("serialize"));

    // Every error the file can produce: cuts, damage, limits, refusals.
    let mut errors = Vec::new();
    for cut in (0..good.len()).step_by(7) {
        errors.extend(dicom(&good[..cut]).err());
    }
    for i in 128..good.len().min(900) {
        let mut damaged = good.clone();
        damaged[i] ^= 0xA5;
        errors.extend(dicom(&damaged).err());
    }
    let tiny = Limits {
        max_width: 4,
        ..Limits::default()
    };
    errors.extend(decode_dicom(&good, &tiny).err());
    errors.extend(dicom(&dicom_writer::structured_report(true)).err());
    for (photometric, encoding) in [
        ("PALETTE COLOR", Encoding::Explicit),
        ("MONOCHROME2", Encoding::Jpeg2000Garbage),
    ] {
        let spec = Spec {
            photometric,
            patient: true,
            encoding,
            ..Spec::default()
        };
        errors.extend(dicom(&dicom_writer::write(&spec, &vec![0; pixel_count(&spec)])).err());
    }
    assert!(errors.len() > 50);
    texts.extend(errors.iter().map(|e| e.to_string()));
    texts.extend(errors.iter().map(|e| format!("{e:?}")));

    for text in &texts {
        assert!(!text.contains('\n'), "not one line: {text}");
        for secret in planted {
            assert!(!text.contains(secret), "{secret:?} leaked into: {text}");
        }
    }
}

/// Identity is read only by the one function that exists for it (the appliance calls it only when
/// its configuration shows identity), formatted for a display, and redacted from `Debug`.
#[test]
fn patient_identity_is_read_only_on_request() {
    let spec = Spec {
        patient: true,
        ..Spec::default()
    };
    let named = dicom_writer::write(&spec, &samples(pixel_count(&spec), 0, 255, 4));
    let who = read_patient_identity(&named, &Limits::default()).expect("identity");
    assert_eq!(who.name.as_deref(), Some("DOE, JANE"));
    assert_eq!(who.id.as_deref(), Some(dicom_writer::PATIENT_ID));
    assert_eq!(who.birth_date.as_deref(), Some("1940-01-01"));
    assert_eq!(
        who.label().as_deref(),
        Some("DOE, JANE \u{b7} PID-12345 \u{b7} 1940-01-01")
    );
    assert_eq!(format!("{who:?}"), "PatientIdentity(redacted)");

    let anonymous = dicom_writer::write(&Spec::default(), &samples(pixel_count(&spec), 0, 255, 4));
    assert!(read_patient_identity(&anonymous, &Limits::default()).is_none());
    assert!(read_patient_identity(&png_bytes(&GrayImage::new(8, 8)), &Limits::default()).is_none());
    // A file whose structure is not sound is not read for identity either.
    assert!(read_patient_identity(&named[..named.len() / 2], &Limits::default()).is_none());
}

// ---------------------------------------------------------------------------------------------
// A public corpus, when installed

/// pydicom's wheel ships real-world test files (pydicom/data/test_files, 3 MB, MIT). When
/// `KNEESCREEN_DICOM_CORPUS` points there (e.g. after `pip install pydicom==3.0.2`), every file
/// must decode or be refused without a panic, the greyscale images must decode (identically
/// across the encodings of the same image), and the encodings not read here are named.
#[test]
fn public_corpus_when_installed() {
    let Ok(dir) = std::env::var("KNEESCREEN_DICOM_CORPUS") else {
        println!("KNEESCREEN_DICOM_CORPUS not set: public corpus not checked");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    paths.sort();
    assert!(
        paths.len() > 50,
        "{} files in {}",
        paths.len(),
        dir.display()
    );
    // Every file that decodes goes through the whole analysis, as the appliance would: graded,
    // or (an MR or CT slice is no knee radiograph) rejected with a reason; never a model failure.
    let classifier = kneescreen::pipeline::model::Classifier::load(
        &kneescreen::pipeline::model::default_models_dir(),
        "int8",
    )
    .expect("model");
    let (mut decoded, mut graded) = (0, 0);
    for path in &paths {
        let bytes = std::fs::read(path).expect("read");
        match dicom(&bytes) {
            Ok(_) => {
                decoded += 1;
                let name = path.display().to_string();
                let sha = sha256_hex(&bytes);
                let analysis = match analyze(&bytes, &name, &sha, &classifier, &Limits::default()) {
                    Ok(a) => a,
                    Err(AnalysisError::Rejected(e)) => {
                        assert!(!e.to_string().is_empty(), "{name}");
                        println!("{name}: rejected: {e}");
                        continue;
                    }
                    Err(e) => panic!("{name}: decoded but the analysis failed: {e}"),
                };
                graded += 1;
                let g = analysis.record.grading().cloned().expect("graded");
                let total: f32 = g.headline.probabilities.iter().sum();
                assert!(
                    g.headline.grade <= 4 && (total - 1.0).abs() < 1e-3,
                    "{name}"
                );
                assert!(g.dicom.is_some(), "{name}");
                let off_scope = g.warnings.iter().any(|w| {
                    w.contains("not a radiograph") || w.contains("knee X-rays are greyscale")
                });
                assert!(!off_scope || g.refer, "{name}: not a radiograph, so REFER");
                println!(
                    "{name}: KL {} ({:.2}) {:?}",
                    g.headline.grade, g.headline.confidence, g.warnings
                );
            }
            Err(e) => println!("{}: {e}", path.display()),
        }
    }
    println!(
        "{decoded} of {} files decoded, {graded} graded (the rest: no knee joint)",
        paths.len()
    );
    let read = |name: &str| dicom(&std::fs::read(dir.join(name)).expect(name));
    let reference = read("MR_small.dcm").expect("MR_small.dcm").gray;
    for name in [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_padded.dcm",
    ] {
        let image = read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.gray, reference, "{name}");
    }
    for name in ["CT_small.dcm", "examples_overlay.dcm", "image_dfl.dcm"] {
        read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, says) in [
        ("JPEG2000.dcm", "JPEG 2000"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS"),
        ("JPGExtended.dcm", "12-bit"),
        ("reportsi.dcm", "Basic Text SR"),
        ("rtplan.dcm", "RT Plan"),
        ("MR_truncated.dcm", "truncated"),
    ] {
        let err = read(name).err().unwrap_or_else(|| panic!("{name} decoded"));
        assert!(err.to_string().contains(says), "{name}: {err}");
    }
}

/// Through the real model: an 8-bit image wrapped as DICOM gets the identical probabilities, and
/// the same image stored as windowed 16-bit MONOCHROME1 gets the same grade, as the PNG.
#[test]
fn dicom_inputs_get_the_grade_of_the_same_image_as_png() {
    use kneescreen::pipeline::model::{default_models_dir, Classifier};

    // A drawn knee the joint detector takes as one joint crop, as a PNG.
    let mut png = Vec::new();
    synthetic_knee(224, 224, 5)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let gray = decode_gray(&png, &Limits::default()).unwrap();
    let (w, h) = (gray.width() as u16, gray.height() as u16);
    let classifier = Classifier::load(&default_models_dir(), "int8").unwrap();
    let grading = |bytes: &[u8]| {
        analyze(
            bytes,
            "knee",
            &sha256_hex(bytes),
            &classifier,
            &Limits::default(),
        )
        .unwrap()
        .record
        .grading()
        .cloned()
        .unwrap()
    };
    let reference = grading(&png);
    let g: Vec<i32> = gray.as_raw().iter().map(|&v| i32::from(v)).collect();

    let eight = Spec {
        rows: h,
        columns: w,
        bits_allocated: 8,
        bits_stored: 8,
        ..Spec::default()
    };
    let from_8_bit = grading(&dicom_writer::write(&eight, &g));
    assert_eq!(
        from_8_bit.headline.probabilities,
        reference.headline.probabilities
    );
    assert!(from_8_bit.dicom.is_some());
    assert_eq!(from_8_bit.refer, reference.refer);
    // The same pixels labelled as an MR image: graded alike, but always referred to a clinician.
    let mr = Spec {
        modality: "MR",
        ..eight.clone()
    };
    let from_mr = grading(&dicom_writer::write(&mr, &g));
    assert_eq!(
        from_mr.headline.probabilities,
        reference.headline.probabilities
    );
    assert!(from_mr.refer);
    assert_eq!(from_mr.refer_reason, Some(ReferReason::NotARadiograph));

    let sixteen = Spec {
        rows: h,
        columns: w,
        bits_allocated: 16,
        bits_stored: 16,
        photometric: "MONOCHROME1",
        windows: vec![(1000.0 + 255.0 * 200.0 / 2.0, 255.0 * 200.0)],
        ..Spec::default()
    };
    let stored: Vec<i32> = g.iter().map(|&g| (255 - g) * 200 + 1000).collect();
    assert_eq!(
        grading(&dicom_writer::write(&sixteen, &stored))
            .headline
            .grade,
        reference.headline.grade
    );

    // Two knees side by side at 1 mm per pixel: as PNG and as DICOM both knees are found and cut
    // out, so neither the shape nor the physical size is warned about.
    let both = image::GrayImage::from_fn(2 * u32::from(w), u32::from(h), |x, y| {
        *gray.get_pixel(x % u32::from(w), y)
    });
    let mut both_png = Vec::new();
    both.write_to(
        &mut std::io::Cursor::new(&mut both_png),
        image::ImageFormat::Png,
    )
    .unwrap();
    let found = |g: &kneescreen::record::Grading| {
        let says = |part: &str| g.warnings.iter().filter(|w| w.contains(part)).count();
        let sides: Vec<Side> = g.knees.iter().map(|k| k.side).collect();
        (
            sides,
            says("not square"),
            says("cm: the model was trained on single-knee"),
        )
    };
    let two = (vec![Side::Right, Side::Left], 0, 0);
    assert_eq!(found(&grading(&both_png)), two);
    let wide = Spec {
        columns: 2 * w,
        pixel_spacing: Some([1.0, 1.0]),
        ..eight
    };
    let pixels: Vec<i32> = both.as_raw().iter().map(|&v| i32::from(v)).collect();
    assert_eq!(found(&grading(&dicom_writer::write(&wide, &pixels))), two);
}
