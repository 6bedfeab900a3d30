//! Writes small synthetic DICOM files in memory (dicom-object), for the DICOM decoding tests.
//! Covers the encodings the appliance reads: native (implicit/explicit/deflated), RLE, JPEG.

#![allow(dead_code)]

use dicom_core::value::{DataSetSequence, PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

pub const DX_FOR_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.1";
pub const BASIC_TEXT_SR: &str = "1.2.840.10008.5.1.4.1.1.88.11";
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
pub const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
pub const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";

pub const STUDY_UID: &str = "1.2.826.0.1.3680043.10.1077.1";
pub const SERIES_UID: &str = "1.2.826.0.1.3680043.10.1077.1.2";
pub const SOP_UID: &str = "1.2.826.0.1.3680043.10.1077.1.2.3";

/// Patient attributes planted in files to prove they never come out.
pub const PATIENT_NAME: &str = "DOE^JANE";
pub const PATIENT_ID: &str = "PID-12345";
pub const PATIENT_BIRTH_DATE: &str = "19400101";
/// Everything that must not be found in an output: the attributes and their parts.
pub const PLANTED: [&str; 6] = [
    PATIENT_NAME,
    "DOE",
    "JANE",
    PATIENT_ID,
    PATIENT_BIRTH_DATE,
    "1940",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Implicit,
    Explicit,
    Deflated,
    /// Explicit VR Big Endian (retired, still in old archives).
    BigEndian,
    Rle,
    /// 8-bit samples only, quality 95.
    JpegBaseline,
    /// JPEG Lossless, first-order prediction (process 14, selection value 1), 2–16 bits.
    JpegLosslessSv1,
    /// The JPEG 2000 UID with garbage in the fragment.
    Jpeg2000Garbage,
    /// The JPEG-LS UID with garbage in the fragment.
    JpegLsGarbage,
}

impl Encoding {
    pub fn uid(self) -> &'static str {
        match self {
            Encoding::Implicit => IMPLICIT_VR_LE,
            Encoding::Explicit => EXPLICIT_VR_LE,
            Encoding::Deflated => DEFLATED,
            Encoding::BigEndian => EXPLICIT_VR_BE,
            Encoding::Rle => RLE_LOSSLESS,
            Encoding::JpegBaseline => JPEG_BASELINE,
            Encoding::JpegLosslessSv1 => JPEG_LOSSLESS_SV1,
            Encoding::Jpeg2000Garbage => JPEG_2000_LOSSLESS,
            Encoding::JpegLsGarbage => JPEG_LS_LOSSLESS,
        }
    }
}

/// What to put in the file. `Default` is a 24×32 (columns×rows) 16-bit-allocated, 12-bit-stored
/// MONOCHROME2 DX image in Explicit VR Little Endian, without window or rescale.
#[derive(Debug, Clone)]
pub struct Spec {
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: &'static str,
    pub samples_per_pixel: u16,
    pub frames: u32,
    /// (center, width) pairs, written as multi-valued WindowCenter/WindowWidth.
    pub windows: Vec<(f64, f64)>,
    pub voi_function: Option<&'static str>,
    /// (slope, intercept)
    pub rescale: Option<(f64, f64)>,
    /// (first mapped value, bits per entry, entries)
    pub voi_lut: Option<(i32, u16, Vec<u16>)>,
    /// (first mapped value, bits per entry, entries)
    pub modality_lut: Option<(i32, u16, Vec<u16>)>,
    pub pixel_spacing: Option<[f64; 2]>,
    pub imager_pixel_spacing: Option<[f64; 2]>,
    pub image_laterality: Option<&'static str>,
    pub laterality: Option<&'static str>,
    pub view_position: Option<&'static str>,
    pub patient: bool,
    pub modality: &'static str,
    pub encoding: Encoding,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            rows: 32,
            columns: 24,
            bits_allocated: 16,
            bits_stored: 12,
            signed: false,
            photometric: "MONOCHROME2",
            samples_per_pixel: 1,
            frames: 1,
            windows: Vec::new(),
            voi_function: None,
            rescale: None,
            voi_lut: None,
            modality_lut: None,
            pixel_spacing: None,
            imager_pixel_spacing: None,
            image_laterality: None,
            laterality: None,
            view_position: None,
            patient: false,
            modality: "DX",
            encoding: Encoding::Explicit,
        }
    }
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<Value<InMemDicomObject>>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| format!("{v}")).collect())
}

/// The header attributes of `spec`, without pixel data.
pub fn header(spec: &Spec) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, DX_FOR_PRESENTATION);
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, SOP_UID);
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, STUDY_UID);
    put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, SERIES_UID);
    put(&mut obj, tags::MODALITY, VR::CS, spec.modality);
    if spec.patient {
        put(&mut obj, tags::PATIENT_NAME, VR::PN, PATIENT_NAME);
        put(&mut obj, tags::PATIENT_ID, VR::LO, PATIENT_ID);
        put(
            &mut obj,
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            PATIENT_BIRTH_DATE,
        );
        put(&mut obj, tags::OTHER_PATIENT_NAMES, VR::PN, PATIENT_NAME);
        put(&mut obj, tags::INSTITUTION_NAME, VR::LO, PATIENT_NAME);
    }
    if let Some(s) = spec.pixel_spacing {
        put(&mut obj, tags::PIXEL_SPACING, VR::DS, ds(&s));
    }
    if let Some(s) = spec.imager_pixel_spacing {
        put(&mut obj, tags::IMAGER_PIXEL_SPACING, VR::DS, ds(&s));
    }
    if let Some(l) = spec.image_laterality {
        put(&mut obj, tags::IMAGE_LATERALITY, VR::CS, l);
    }
    if let Some(l) = spec.laterality {
        put(&mut obj, tags::LATERALITY, VR::CS, l);
    }
    if let Some(v) = spec.view_position {
        put(&mut obj, tags::VIEW_POSITION, VR::CS, v);
    }
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(spec.samples_per_pixel),
    );
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        spec.photometric,
    );
    if spec.samples_per_pixel == 3 {
        put(
            &mut obj,
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
    }
    if spec.frames != 1 {
        put(
            &mut obj,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            spec.frames.to_string(),
        );
    }
    put(
        &mut obj,
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(spec.rows),
    );
    put(
        &mut obj,
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(spec.columns),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(spec.bits_allocated),
    );
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(spec.bits_stored),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(spec.bits_stored - 1),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(u16::from(spec.signed)),
    );
    if let Some((slope, intercept)) = spec.rescale {
        put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, ds(&[intercept]));
        put(&mut obj, tags::RESCALE_SLOPE, VR::DS, ds(&[slope]));
    }
    if !spec.windows.is_empty() {
        let centers: Vec<f64> = spec.windows.iter().map(|w| w.0).collect();
        let widths: Vec<f64> = spec.windows.iter().map(|w| w.1).collect();
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, ds(&centers));
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, ds(&widths));
    }
    if let Some(f) = spec.voi_function {
        put(&mut obj, tags::VOILUT_FUNCTION, VR::CS, f);
    }
    for (lut, sequence) in [
        (&spec.voi_lut, tags::VOILUT_SEQUENCE),
        (&spec.modality_lut, tags::MODALITY_LUT_SEQUENCE),
    ] {
        if let Some((first, bits, entries)) = lut {
            let mut item = InMemDicomObject::new_empty();
            let descriptor = [entries.len() as u16, *first as u16, *bits];
            let descriptor = PrimitiveValue::U16(descriptor.to_vec().into());
            put(&mut item, tags::LUT_DESCRIPTOR, VR::US, descriptor);
            if sequence == tags::MODALITY_LUT_SEQUENCE {
                put(&mut item, tags::MODALITY_LUT_TYPE, VR::LO, "US");
            }
            let data = PrimitiveValue::U16(entries.clone().into());
            put(&mut item, tags::LUT_DATA, VR::OW, data);
            let seq = DataSetSequence::new(vec![item], Length::UNDEFINED);
            put(&mut obj, sequence, VR::SQ, seq);
        }
    }
    obj
}

/// Writes `spec` with the given stored values (`frames × rows × columns × samples`, each within
/// BitsStored; negative ones for signed images).
pub fn write(spec: &Spec, samples: &[i32]) -> Vec<u8> {
    write_with_header(header(spec), spec, samples)
}

/// `write`, with a header the caller made (from `header(spec)`, then changed).
pub fn write_with_header(mut obj: InMemDicomObject, spec: &Spec, samples: &[i32]) -> Vec<u8> {
    let per_frame =
        usize::from(spec.rows) * usize::from(spec.columns) * usize::from(spec.samples_per_pixel);
    assert_eq!(
        samples.len(),
        per_frame * spec.frames as usize,
        "sample count"
    );
    let pixel_data: Value<InMemDicomObject> = match spec.encoding {
        Encoding::Implicit | Encoding::Explicit | Encoding::Deflated | Encoding::BigEndian => {
            native(spec, samples)
        }
        Encoding::Rle => fragments(
            samples
                .chunks(per_frame)
                .map(|frame| rle_frame(spec, frame))
                .collect(),
        ),
        Encoding::JpegBaseline => fragments(
            samples
                .chunks(per_frame)
                .map(|frame| jpeg_frame(spec, frame))
                .collect(),
        ),
        Encoding::JpegLosslessSv1 => fragments(
            samples
                .chunks(per_frame)
                .map(|frame| jpeg_lossless_frame(spec, frame))
                .collect(),
        ),
        Encoding::Jpeg2000Garbage => fragments(vec![b"\xFF\x4F\xFF\x51garbage!".repeat(8)]),
        Encoding::JpegLsGarbage => fragments(vec![b"\xFF\xD8\xFF\xF7garbage!".repeat(8)]),
    };
    let vr = match spec.encoding {
        Encoding::Implicit | Encoding::Explicit | Encoding::Deflated | Encoding::BigEndian
            if spec.bits_allocated == 16 =>
        {
            VR::OW
        }
        _ => VR::OB,
    };
    obj.put(DataElement::new(tags::PIXEL_DATA, vr, pixel_data));
    write_object(obj, spec.encoding.uid())
}

/// Wraps an object in a Part 10 file (preamble, DICM, file meta) with the given syntax.
pub fn write_object(obj: InMemDicomObject, transfer_syntax: &str) -> Vec<u8> {
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(transfer_syntax))
        .expect("file meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("write DICOM");
    out
}

fn native(spec: &Spec, samples: &[i32]) -> Value<InMemDicomObject> {
    if spec.bits_allocated == 8 {
        let bytes: Vec<u8> = samples.iter().map(|&v| v as u8).collect();
        PrimitiveValue::U8(bytes.into()).into()
    } else {
        let words: Vec<u16> = samples.iter().map(|&v| v as u16).collect();
        PrimitiveValue::U16(words.into()).into()
    }
}

fn fragments(frames: Vec<Vec<u8>>) -> Value<InMemDicomObject> {
    let frames: Vec<Vec<u8>> = frames
        .into_iter()
        .map(|mut f| {
            if f.len() % 2 == 1 {
                f.push(0);
            }
            f
        })
        .collect();
    PixelFragmentSequence::new(Vec::<u32>::new(), frames).into()
}

/// One frame as RLE Lossless (PS3.5 annex G): one segment per byte plane, most significant
/// byte first, each row PackBits-coded on its own.
pub fn rle_frame(spec: &Spec, frame: &[i32]) -> Vec<u8> {
    let bytes_per_sample = usize::from(spec.bits_allocated / 8);
    let spp = usize::from(spec.samples_per_pixel);
    let columns = usize::from(spec.columns);
    let mut segments = Vec::new();
    for sample in 0..spp {
        for byte in (0..bytes_per_sample).rev() {
            let plane: Vec<u8> = frame
                .iter()
                .skip(sample)
                .step_by(spp)
                .map(|&v| ((v as u32) >> (8 * byte)) as u8)
                .collect();
            let mut segment = Vec::new();
            for row in plane.chunks(columns) {
                packbits(row, &mut segment);
            }
            if segment.len() % 2 == 1 {
                segment.push(0x80); // no-op, pads to even length
            }
            segments.push(segment);
        }
    }
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
    let mut offset = 64u32;
    for (i, segment) in segments.iter().enumerate() {
        out[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
        offset += segment.len() as u32;
    }
    for segment in segments {
        out.extend(segment);
    }
    out
}

fn packbits(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let run = data[i..]
            .iter()
            .take(128)
            .take_while(|&&b| b == data[i])
            .count();
        if run >= 3 {
            out.push((257 - run) as u8);
            out.push(data[i]);
            i += run;
        } else {
            let start = i;
            while i < data.len() && i - start < 128 {
                let ahead = data[i..]
                    .iter()
                    .take(3)
                    .take_while(|&&b| b == data[i])
                    .count();
                if ahead >= 3 {
                    break;
                }
                i += 1;
            }
            out.push((i - start - 1) as u8);
            out.extend_from_slice(&data[start..i]);
        }
    }
}

/// One 8-bit frame as baseline JPEG (grey or RGB), by the `image` crate's encoder.
pub fn jpeg_frame(spec: &Spec, frame: &[i32]) -> Vec<u8> {
    assert_eq!(spec.bits_allocated, 8, "baseline JPEG holds 8-bit samples");
    let bytes: Vec<u8> = frame.iter().map(|&v| v as u8).collect();
    let color = if spec.samples_per_pixel == 3 {
        image::ExtendedColorType::Rgb8
    } else {
        image::ExtendedColorType::L8
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(&bytes, spec.columns.into(), spec.rows.into(), color)
        .expect("encode JPEG");
    out
}

/// One grey frame as lossless JPEG (ITU T.81 annex H): process 14, predictor 1, no point
/// transform, precision = BitsStored, one Huffman table giving every difference category a
/// 5-bit code.
pub fn jpeg_lossless_frame(spec: &Spec, frame: &[i32]) -> Vec<u8> {
    assert_eq!(spec.samples_per_pixel, 1);
    let precision = spec.bits_stored as u8;
    let (width, height) = (usize::from(spec.columns), usize::from(spec.rows));
    let mask = (1i32 << precision) - 1;
    let value = |i: usize| frame[i] & mask; // signed values are coded as their bit pattern
    let mut out = vec![0xFF, 0xD8];
    // DHT: class 0 (DC/lossless), table 0; 17 symbols (categories 0..=16), all of length 5.
    let mut dht = vec![0x00];
    dht.extend([0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    dht.extend(0..=16u8);
    segment(&mut out, 0xC4, &dht);
    let (w, h) = (spec.columns.to_be_bytes(), spec.rows.to_be_bytes());
    segment(
        &mut out,
        0xC3,
        &[precision, h[0], h[1], w[0], w[1], 1, 1, 0x11, 0],
    );
    segment(&mut out, 0xDA, &[1, 1, 0x00, 1, 0, 0]);
    let mut bits = BitWriter::default();
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let prediction = match (x, y) {
                (0, 0) => 1 << (precision - 1),
                (0, _) => value(i - width),
                _ => value(i - 1),
            };
            // Differences are taken modulo 2^16 (H.1.2.1).
            let mut diff = (value(i) - prediction) & 0xFFFF;
            if diff >= 0x8000 {
                diff -= 0x10000;
            }
            let category = if diff == 0 {
                0
            } else {
                32 - diff.unsigned_abs().leading_zeros()
            };
            bits.put(category, 5); // code of symbol k is k, in 5 bits
            if (1..16).contains(&category) {
                let extra = if diff < 0 { diff - 1 } else { diff };
                bits.put(extra as u32 & ((1 << category) - 1), category);
            }
        }
    }
    out.extend(bits.finish());
    out.extend([0xFF, 0xD9]);
    out
}

fn segment(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend(((data.len() + 2) as u16).to_be_bytes());
    out.extend(data);
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    count: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u32) {
        for b in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((value >> b) & 1);
            self.count += 1;
            if self.count == 8 {
                self.push(self.acc as u8);
            }
        }
    }

    fn push(&mut self, byte: u8) {
        self.out.push(byte);
        if byte == 0xFF {
            self.out.push(0x00); // byte stuffing
        }
        self.acc = 0;
        self.count = 0;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            let pad = 8 - self.count;
            let byte = ((self.acc << pad) | ((1 << pad) - 1)) as u8;
            self.push(byte);
        }
        self.out
    }
}

/// A structured-report-like object: SR SOP class, some content, no pixel data.
pub fn structured_report(patient: bool) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, BASIC_TEXT_SR);
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, SOP_UID);
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, STUDY_UID);
    put(&mut obj, tags::MODALITY, VR::CS, "SR");
    if patient {
        put(&mut obj, tags::PATIENT_NAME, VR::PN, PATIENT_NAME);
        put(&mut obj, tags::PATIENT_ID, VR::LO, PATIENT_ID);
        put(
            &mut obj,
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            PATIENT_BIRTH_DATE,
        );
    }
    put(&mut obj, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    write_object(obj, EXPLICIT_VR_LE)
}

/// The byte offset of the first occurrence of `needle`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
