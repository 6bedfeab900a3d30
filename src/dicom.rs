//! DICOM radiograph bytes → 8-bit grey image, plus the non-identifying header facts (`DicomInfo`).
//! Owns the DICOM structure checks, the supported encodings, and the stored value → grey mapping.
//!
//! # Supported files
//!
//! A DICOM Part 10 file (128-byte preamble — or none, when the file starts with `DICM` —,
//! `DICM`, file meta information) in Implicit or
//! Explicit VR Little Endian, Deflated Explicit VR Little Endian, Explicit VR Big Endian
//! (retired), RLE Lossless, or JPEG Baseline / Extended (8-bit) / Lossless (process 14, also
//! SV1). JPEG 2000, JPEG-LS, JPEG XL,
//! 12-bit lossy JPEG and video are refused with the transfer syntax's name and UID; objects
//! without pixel data (structured reports, presentation states, …) with their SOP class.
//! 8 to 16 bits stored, unsigned or signed, MONOCHROME1, MONOCHROME2 or 8-bit RGB.
//! Only the first frame is read; a multi-frame file gets a warning.
//!
//! # Pixel mapping (done once, in [`PixelMapping`]; one 8-bit value per possible stored value)
//!
//! 1. Stored value: the `BitsStored` bits ending at `HighBit`, sign-extended when
//!    `PixelRepresentation` is 1.
//! 2. Modality transform: `v = stored × RescaleSlope + RescaleIntercept` (slope 1, intercept 0
//!    when absent); a Modality LUT Sequence is used instead when the file has one.
//! 3. VOI transform, to the output range 0..255, in this order of preference:
//!    - the first window (`WindowCenter`/`WindowWidth`, first value when there are several)
//!      with `VOILUTFunction`: LINEAR (default; PS3.3 C.11.2.1.2.1:
//!      `x ≤ c − ½ − (w−1)/2 → 0`, `x > c − ½ + (w−1)/2 → 255`, else
//!      `((x − (c − ½)) / (w − 1) + ½) × 255`), LINEAR_EXACT (C.11.2.1.3.2) or SIGMOID
//!      (C.11.2.1.3.1);
//!    - else the first item of the VOI LUT Sequence (inputs outside the table clamp to its
//!      ends; entries scaled from 0..2^bits−1 to 0..255);
//!    - else the full range the stored bits allow (0…2^BitsStored−1, or −2^(BitsStored−1)…
//!      2^(BitsStored−1)−1 when signed), passed through the modality transform and scaled
//!      linearly to 0..255. An 8-bit unsigned image without rescale passes through unchanged.
//!
//!    The result is rounded to the nearest integer (halves away from zero) and clamped.
//! 4. MONOCHROME1 (white = low values) is inverted: `255 − y`.
//!
//! RGB (8-bit only; JPEG YBR data arrives as RGB from the decoder) is mixed to grey with the
//! weights the JPEG path uses; no modality or VOI transform applies to colour.
//!
//! # Safety against hostile or damaged files
//!
//! Every element length is checked against the bytes present before the data set is read (a
//! deflated data set is inflated into at most `max_file_bytes` first), `Rows × Columns` is
//! checked against [`Limits`] before any pixel buffer exists, and the preconditions the pixel
//! decoders rely on without checking (RLE segment table and lengths, JPEG frame size and
//! precision) are verified first: a bad file gives an error, never a panic.
//!
//! # Privacy
//!
//! Patient attributes (name, ID, birth date, …) are never copied out of the parsed object by
//! `decode_dicom`: `DicomInfo` has no field for them and no error or warning text is built from
//! them. Only [`read_patient_identity`] reads them, for the appliance to show on its panel and
//! console when its configuration explicitly asks for it.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::stateful::decode::StatefulDecode;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::decode::{bt601_gray, check_size, DecodeError, Format, Limits};

/// A decoded DICOM radiograph: the grey image the preprocessing takes, the header facts kept in
/// the result record, and warnings for the technician.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub gray: GrayImage,
    pub info: DicomInfo,
    pub warnings: Vec<String>,
}

/// The header facts kept in the result record. Deliberately nothing that identifies the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DicomInfo {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    /// Transfer syntax UID, e.g. `1.2.840.10008.1.2.1`.
    pub transfer_syntax: String,
    /// E.g. `DX`, `CR`.
    pub modality: Option<String>,
    /// ImageLaterality (0020,0062), else Laterality (0020,0060): `L`, `R`, `B` or `U`.
    pub laterality: Option<String>,
    /// E.g. `AP`, `PA`, `LL`.
    pub view_position: Option<String>,
    /// Row spacing, column spacing (mm), as the file states them.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Which attribute `pixel_spacing_mm` came from.
    pub pixel_spacing_source: Option<SpacingSource>,
    pub rows: u32,
    pub columns: u32,
    pub bits_stored: u16,
    /// Photometric interpretation as stored, e.g. `MONOCHROME1`.
    pub photometric: String,
    pub frames: u32,
}

/// PixelSpacing (0028,0030) is calibrated to the patient; ImagerPixelSpacing (0018,1164) is at
/// the detector (includes the geometric magnification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpacingSource {
    PixelSpacing,
    ImagerPixelSpacing,
}

pub const MULTI_FRAME_WARNING: &str = "multi-frame: only the first frame was graded";

/// Decodes a DICOM file's bytes (first frame) into an 8-bit grey image; see the module
/// documentation for what is supported and how pixel values are mapped. Never panics.
pub fn decode_dicom(bytes: &[u8], limits: &Limits) -> Result<DicomImage, DecodeError> {
    let (meta, syntax, obj) = open(bytes, limits)?;

    let sop_class_uid = text(&obj, tags::SOP_CLASS_UID)
        .or_else(|| non_empty(obj.meta().media_storage_sop_class_uid()));
    let pixel_data = match obj.element_opt(tags::PIXEL_DATA) {
        Ok(Some(e)) => e,
        _ => {
            return Err(DecodeError::DicomNoPixelData {
                sop_class: describe_sop_class(sop_class_uid.as_deref()),
            })
        }
    };

    let px = PixelModule::read(&obj)?;
    check_size(Format::Dicom, px.columns, px.rows, limits)?;
    px.check_supported()?;

    let info = DicomInfo {
        study_instance_uid: text(&obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(&obj, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(&obj, tags::SOP_INSTANCE_UID)
            .or_else(|| non_empty(obj.meta().media_storage_sop_instance_uid())),
        sop_class_uid,
        transfer_syntax: meta.transfer_syntax.clone(),
        modality: text(&obj, tags::MODALITY),
        laterality: text(&obj, tags::IMAGE_LATERALITY).or_else(|| text(&obj, tags::LATERALITY)),
        view_position: text(&obj, tags::VIEW_POSITION),
        pixel_spacing_mm: None,
        pixel_spacing_source: None,
        rows: px.rows,
        columns: px.columns,
        bits_stored: px.bits_stored,
        photometric: px.photometric.clone(),
        frames: px.frames,
    };
    let info = with_spacing(info, &obj);

    // The decoders index their buffers on trust: prove their preconditions first.
    match (&syntax, pixel_data.value()) {
        (Syntax::Native, Value::Primitive(p)) => px.check_native_length(p.calculate_byte_len())?,
        (Syntax::Rle, Value::PixelSequence(seq)) => {
            px.check_rle(first_fragment(seq.fragments())?)?
        }
        (Syntax::Jpeg, Value::PixelSequence(seq)) => px.check_jpeg(&jpeg_frame_zero(
            seq.fragments(),
            seq.offset_table(),
            px.frames,
        )?)?,
        _ => {
            return Err(corrupt(
                "the pixel data is not stored the way its transfer syntax says",
            ))
        }
    }

    let decoded = obj.decode_pixel_data_frame(0).map_err(|e| {
        corrupt(&format!(
            "its pixel data could not be decoded ({})",
            chain(&e)
        ))
    })?;

    let mut warnings = Vec::new();
    let gray = if decoded.samples_per_pixel() == 3 {
        rgb_to_gray(&decoded, px.columns, px.rows)?
    } else {
        let mapping = PixelMapping::from_object(&obj, &px, &mut warnings);
        let gray = mapping.apply(decoded.data(), &px)?;
        if matches!(mapping.voi, Voi::FullRange) && px.bits_stored > 8 {
            let (lo, hi) = gray
                .iter()
                .fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if hi.saturating_sub(lo) < 32 {
                warnings.push(format!(
                    "the DICOM file has no display window and its pixel values use only a small \
                     part of the {}-bit range: the image is nearly uniform; export it with a \
                     window or as 8-bit",
                    px.bits_stored
                ));
            }
        }
        GrayImage::from_raw(px.columns, px.rows, gray)
            .ok_or_else(|| corrupt("the decoded pixel data does not match Rows × Columns"))?
    };
    if px.frames > 1 {
        warnings.push(MULTI_FRAME_WARNING.to_string());
    }
    warnings.extend(not_a_radiograph(&info));
    warnings.extend(more_than_one_knee(&info));
    Ok(DicomImage {
        gray,
        info,
        warnings,
    })
}

/// Parses the file after checking its structure: every length is proven against the bytes
/// present before the object reader trusts it.
fn open(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(FileMeta, Syntax, DefaultDicomObject), DecodeError> {
    crate::decode::check_file_bytes(bytes, limits)?;
    // Some writers leave the 128-byte preamble out and start with "DICM": put it back, so the
    // offsets below hold for both.
    let padded;
    let bytes = if bytes.starts_with(b"DICM") && bytes.get(128..132) != Some(b"DICM") {
        padded = [&[0u8; 128][..], bytes].concat();
        &padded[..]
    } else {
        bytes
    };
    if bytes.len() < 132 {
        return Err(DecodeError::Truncated(Format::Dicom));
    }
    if &bytes[128..132] != b"DICM" {
        return Err(corrupt("no \"DICM\" marker after the 128-byte preamble"));
    }
    let meta = scan_file_meta(bytes)?;
    let syntax = Syntax::from_uid(&meta.transfer_syntax)?;
    check_element_lengths(&bytes[meta.data_set_start..], &meta.transfer_syntax, limits)?;
    let obj = OpenFileOptions::new()
        .from_reader(&bytes[128..])
        .map_err(|_| corrupt("its data set could not be read"))?;
    Ok((meta, syntax, obj))
}

/// Who a radiograph belongs to. Read only when the configuration asks to show it (on the panel
/// and the console); it is never written to a record, a log or an error message, and its
/// `Debug` form is redacted so it cannot slip into one by accident.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
pub struct PatientIdentity {
    /// PatientName (0010,0010) as "FAMILY, Given Middle".
    pub name: Option<String>,
    /// PatientID (0010,0020).
    pub id: Option<String>,
    /// PatientBirthDate (0010,0030) as YYYY-MM-DD.
    pub birth_date: Option<String>,
}

impl std::fmt::Debug for PatientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientIdentity(redacted)")
    }
}

impl PatientIdentity {
    /// One line for a narrow display, e.g. "DOE, Jane · PID-1 · 1940-01-01"; `None` when the
    /// file names nobody.
    pub fn label(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.name, &self.id, &self.birth_date]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" \u{b7} "))
    }
}

/// Reads the patient's name, ID and birth date from a DICOM file that [`decode_dicom`] accepts
/// the structure of; `None` for anything else. Call it only when showing identity is enabled.
/// It parses the file again (a few milliseconds) rather than having `decode_dicom` return the
/// identity, so that identity never travels through the analysis that writes records and logs.
pub fn read_patient_identity(bytes: &[u8], limits: &Limits) -> Option<PatientIdentity> {
    let (_, _, obj) = open(bytes, limits).ok()?;
    let field = |tag| {
        let value = obj.get(tag)?.to_str().ok()?;
        let value: String = value
            .trim_matches(['\0', ' '])
            .chars()
            .take(64)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        (!value.is_empty()).then_some(value)
    };
    let identity = PatientIdentity {
        name: field(tags::PATIENT_NAME).map(|n| person_name(&n)),
        id: field(tags::PATIENT_ID),
        birth_date: field(tags::PATIENT_BIRTH_DATE).map(|d| iso_date(&d)),
    };
    (identity != PatientIdentity::default()).then_some(identity)
}

/// "DOE^JANE^M^^" → "DOE, JANE M" (the first, alphabetic, component group of a PN value).
fn person_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or(pn);
    let mut parts = alphabetic.split('^').map(str::trim);
    let family = parts.next().unwrap_or("");
    let given: Vec<&str> = parts.take(2).filter(|p| !p.is_empty()).collect();
    match (family.is_empty(), given.is_empty()) {
        (_, true) => family.to_string(),
        (true, false) => given.join(" "),
        (false, false) => format!("{family}, {}", given.join(" ")),
    }
}

/// "19400101" → "1940-01-01"; anything else as stored.
fn iso_date(da: &str) -> String {
    match da.len() == 8 && da.bytes().all(|b| b.is_ascii_digit()) {
        true => format!("{}-{}-{}", &da[..4], &da[4..6], &da[6..]),
        false => da.to_string(),
    }
}

/// Modalities a knee radiograph arrives as: computed and digital radiography, radiographic
/// imaging, and "other" (digitised film is often stored as a secondary capture with OT).
const RADIOGRAPH_MODALITIES: [&str; 4] = ["CR", "DX", "RG", "OT"];

/// Whether the header allows a greyscale radiograph: a radiograph modality (or none stated) and
/// a monochrome image. When not, the image is still graded, but the result asks for a clinician.
pub fn looks_like_radiograph(info: &DicomInfo) -> bool {
    let modality_ok = info
        .modality
        .as_deref()
        .is_none_or(|m| RADIOGRAPH_MODALITIES.contains(&m));
    modality_ok && info.photometric.starts_with("MONOCHROME")
}

/// A warning when the header says the image is not a radiograph (an MR slice, a CT, an
/// ultrasound, a colour photograph): it is still graded, but the grade means little.
fn not_a_radiograph(info: &DicomInfo) -> Option<String> {
    if looks_like_radiograph(info) {
        return None;
    }
    Some(match info.modality.as_deref() {
        Some(m) if !RADIOGRAPH_MODALITIES.contains(&m) => format!(
            "the DICOM modality is {m}, not a radiograph (CR/DX): the model grades knee X-rays only, \
             so this grade is not meaningful"
        ),
        _ => format!(
            "the DICOM image is in colour ({}): knee X-rays are greyscale, so this may not be a \
             radiograph and the grade may not be meaningful",
            info.photometric
        ),
    })
}

/// A single-knee joint crop is about 10–15 cm across; wider than this is a full or bilateral
/// radiograph.
const SINGLE_KNEE_MAX_MM: f64 = 200.0;

/// A warning when the pixel spacing shows the image covers more than one knee joint.
pub(crate) fn more_than_one_knee(info: &DicomInfo) -> Option<String> {
    let [row_mm, column_mm] = info.pixel_spacing_mm?;
    let (width, height) = (
        f64::from(info.columns) * column_mm,
        f64::from(info.rows) * row_mm,
    );
    (width > SINGLE_KNEE_MAX_MM || height > SINGLE_KNEE_MAX_MM).then(|| {
        format!(
            "the image covers {:.0} × {:.0} cm: the model was trained on single-knee joint crops, \
             so a full or bilateral radiograph may be graded unreliably; crop one knee joint",
            width / 10.0,
            height / 10.0
        )
    })
}

fn corrupt(detail: &str) -> DecodeError {
    DecodeError::Corrupt {
        format: Format::Dicom,
        detail: detail.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// File structure

struct FileMeta {
    transfer_syntax: String,
    data_set_start: usize,
}

/// Walks the file meta group (always Explicit VR Little Endian) by hand, the way the object
/// reader will (an unknown VR has a 4-byte length, as UN): its lengths are checked before the
/// object reader reserves memory for them, and its group length must be exact, since the object
/// reader trusts it to find where the data set starts.
fn scan_file_meta(bytes: &[u8]) -> Result<FileMeta, DecodeError> {
    let mut pos = 132usize;
    let mut transfer_syntax = None;
    let mut group_end = None;
    while pos < bytes.len() {
        let head = bytes
            .get(pos..pos + 8)
            .ok_or(DecodeError::Truncated(Format::Dicom))?;
        let group = u16::from_le_bytes([head[0], head[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let (header_len, len) = if is_short_vr(&head[4..6]) {
            (8, u32::from(u16::from_le_bytes([head[6], head[7]])))
        } else {
            let ext = bytes
                .get(pos + 8..pos + 12)
                .ok_or(DecodeError::Truncated(Format::Dicom))?;
            (12, u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]))
        };
        let start = pos + header_len;
        let end = start
            .checked_add(len as usize)
            .filter(|&end| end <= bytes.len())
            .ok_or(DecodeError::Truncated(Format::Dicom))?;
        let value = &bytes[start..end];
        match element {
            0x0000 if pos == 132 && len == 4 => {
                let length = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                group_end = Some(end as u64 + u64::from(length));
            }
            0x0000 => return Err(corrupt("its file meta group length is malformed")),
            0x0010 => {
                let uid = String::from_utf8_lossy(value);
                transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).trim().to_string());
            }
            _ => {}
        }
        pos = end;
    }
    if pos >= bytes.len() {
        // Nothing after the file meta information (or not even that).
        return Err(DecodeError::Truncated(Format::Dicom));
    }
    if group_end != Some(pos as u64) {
        return Err(corrupt(
            "its file meta group length is missing or does not match the file meta information",
        ));
    }
    let transfer_syntax = transfer_syntax
        .filter(|ts| !ts.is_empty())
        .ok_or_else(|| corrupt("the file meta information names no transfer syntax"))?;
    Ok(FileMeta {
        transfer_syntax,
        data_set_start: pos,
    })
}

/// The VRs whose length is a 16-bit field in Explicit VR (PS3.5 7.1.2).
fn is_short_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// How the data set and its pixel data are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Native,
    Rle,
    Jpeg,
}

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// Retired in 2004 but still found in old archives; the reader hands its samples over in
/// native byte order like the others.
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

impl Syntax {
    /// The transfer syntaxes read here; anything else is refused with its name.
    fn from_uid(uid: &str) -> Result<Syntax, DecodeError> {
        match uid {
            IMPLICIT_VR_LE | EXPLICIT_VR_LE | DEFLATED_EXPLICIT_VR_LE | EXPLICIT_VR_BE => {
                Ok(Syntax::Native)
            }
            "1.2.840.10008.1.2.5" => Ok(Syntax::Rle),
            // Baseline, Extended (2 & 4), Lossless (14), Lossless SV1 (14, predictor 1).
            "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70" => Ok(Syntax::Jpeg),
            _ => Err(DecodeError::DicomUnsupportedSyntax {
                name: syntax_name(uid),
                uid: printable(uid, 64),
            }),
        }
    }
}

/// A short name a technician will recognise in the export dialog of the sending system.
fn syntax_name(uid: &str) -> String {
    let short = match uid {
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => Some("JPEG 2000"),
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => Some("JPEG 2000 Part 2"),
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            Some("High-Throughput JPEG 2000")
        }
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => Some("JPEG-LS"),
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            Some("JPEG XL")
        }
        u if u.starts_with("1.2.840.10008.1.2.4.10") => Some("MPEG/HEVC video"),
        _ => None,
    };
    match short {
        Some(s) => s.to_string(),
        None => match TransferSyntaxRegistry.get(uid) {
            Some(ts) => ts.name().to_string(),
            None => "unknown transfer syntax".to_string(),
        },
    }
}

/// Reads every element header of the data set without reading values, and refuses the file
/// when a length points past the end: the object reader reserves a declared length before it
/// finds out that the bytes are not there (up to 4 GiB for one element).
fn check_element_lengths(
    data_set: &[u8],
    transfer_syntax: &str,
    limits: &Limits,
) -> Result<(), DecodeError> {
    let inflated;
    let (data, ts_uid) = if transfer_syntax == DEFLATED_EXPLICIT_VR_LE {
        inflated = inflate(data_set, limits.max_file_bytes)?;
        (inflated.as_slice(), EXPLICIT_VR_LE)
    } else {
        (data_set, transfer_syntax)
    };
    let ts =
        TransferSyntaxRegistry
            .get(ts_uid)
            .ok_or_else(|| DecodeError::DicomUnsupportedSyntax {
                name: syntax_name(ts_uid),
                uid: printable(ts_uid, 64),
            })?;
    let total = data.len() as u64;
    let mut reader = LazyDataSetReader::new_with_ts(Cursor::new(data), ts)
        .map_err(|_| corrupt("its data set could not be read"))?;
    while let Some(token) = reader.advance() {
        let token = token.map_err(|e| parse_error(&e))?;
        let end = match &token {
            LazyDataToken::LazyValue { header, decoder } => header
                .len
                .get()
                .map(|len| decoder.position() + u64::from(len)),
            LazyDataToken::LazyItemValue { len, decoder } => {
                Some(decoder.position() + u64::from(*len))
            }
            _ => None,
        };
        if end.is_some_and(|end| end > total) {
            return Err(DecodeError::Truncated(Format::Dicom));
        }
        token.skip().map_err(|e| parse_error(&e))?;
    }
    Ok(())
}

/// Inflates a deflated data set (raw deflate, PS3.5 A.5) into at most `max` bytes.
fn inflate(data: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(data)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated(Format::Dicom),
            _ => corrupt("its deflated data set could not be inflated"),
        })?;
    if out.len() as u64 > max {
        return Err(DecodeError::DicomInflatedTooLarge { max });
    }
    Ok(out)
}

/// An error and its sources on one line, for pixel decoding errors (which quote no element
/// values, only attribute names and codec messages).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    printable(&parts.join(": "), 200)
}

/// Running out of bytes anywhere in the error chain means truncation; anything else is damage.
/// The parser's own message is not shown: it may quote element values.
fn parse_error(e: &(dyn std::error::Error + 'static)) -> DecodeError {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return DecodeError::Truncated(Format::Dicom);
            }
        }
        source = err.source();
    }
    corrupt("its data set is malformed")
}

// ---------------------------------------------------------------------------------------------
// Header attributes

type Element = dicom_object::mem::InMemElement;

/// An attribute at the top level, else in the first item of `macro_seq` in the shared, then
/// the first frame's, functional groups (enhanced multi-frame objects keep windows there).
fn lookup(obj: &InMemDicomObject, tag: Tag, macro_seq: Option<Tag>) -> Option<&Element> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    let macro_seq = macro_seq?;
    [
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
    ]
    .into_iter()
    .find_map(|groups| {
        first_item(obj, groups)
            .and_then(|g| first_item(g, macro_seq))
            .and_then(|m| m.get(tag))
    })
}

fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.get(seq)?.items()?.first()
}

/// A short text attribute, trimmed, printable ASCII only, at most 64 characters.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    non_empty(&value)
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim_matches(['\0', ' ']);
    (!value.is_empty()).then(|| printable(value, 64))
}

fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn float(e: Option<&Element>) -> Option<f64> {
    e?.to_multi_float64()
        .ok()?
        .first()
        .copied()
        .filter(|v| v.is_finite())
}

fn with_spacing(mut info: DicomInfo, obj: &InMemDicomObject) -> DicomInfo {
    let spacing = |tag| {
        let v = obj.get(tag)?.to_multi_float64().ok()?;
        match v[..] {
            [r, c, ..] if r.is_finite() && c.is_finite() && r > 0.0 && c > 0.0 => Some([r, c]),
            _ => None,
        }
    };
    if let Some(s) = spacing(tags::PIXEL_SPACING) {
        info.pixel_spacing_mm = Some(s);
        info.pixel_spacing_source = Some(SpacingSource::PixelSpacing);
    } else if let Some(s) = spacing(tags::IMAGER_PIXEL_SPACING) {
        info.pixel_spacing_mm = Some(s);
        info.pixel_spacing_source = Some(SpacingSource::ImagerPixelSpacing);
    }
    info
}

fn describe_sop_class(uid: Option<&str>) -> String {
    use dicom_core::dictionary::UidDictionary;
    match uid {
        None => "no SOP class given".to_string(),
        Some(uid) => match dicom_dictionary_std::StandardSopClassDictionary.by_uid(uid) {
            Some(entry) => format!("{}, {}", entry.name, uid),
            None => format!("SOP class {uid}"),
        },
    }
}

/// The Image Pixel module attributes the decoding depends on.
struct PixelModule {
    rows: u32,
    columns: u32,
    samples_per_pixel: u16,
    photometric: String,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    frames: u32,
    transfer_syntax: String,
}

impl PixelModule {
    fn read(obj: &DefaultDicomObject) -> Result<PixelModule, DecodeError> {
        let required = |tag: Tag, name: &str| {
            int(obj, tag).ok_or_else(|| corrupt(&format!("the image header has no valid {name}")))
        };
        let small = |v: i64, name: &str| {
            u16::try_from(v).map_err(|_| corrupt(&format!("the image header gives {name} = {v}")))
        };
        let rows = small(required(tags::ROWS, "Rows")?, "Rows")?;
        let columns = small(required(tags::COLUMNS, "Columns")?, "Columns")?;
        let bits_allocated = small(
            required(tags::BITS_ALLOCATED, "BitsAllocated")?,
            "BitsAllocated",
        )?;
        let bits_stored = match int(obj, tags::BITS_STORED) {
            Some(v) => small(v, "BitsStored")?,
            None => bits_allocated,
        };
        let high_bit = match int(obj, tags::HIGH_BIT) {
            Some(v) => small(v, "HighBit")?,
            None => bits_stored.saturating_sub(1),
        };
        let samples_per_pixel = match int(obj, tags::SAMPLES_PER_PIXEL) {
            Some(v) => small(v, "SamplesPerPixel")?,
            None => 1,
        };
        let signed = match int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) {
            0 => false,
            1 => true,
            v => {
                return Err(corrupt(&format!(
                    "the image header gives PixelRepresentation = {v}"
                )))
            }
        };
        let frames = match int(obj, tags::NUMBER_OF_FRAMES) {
            None => 1,
            Some(v) if v >= 1 => u32::try_from(v).unwrap_or(u32::MAX),
            Some(v) => {
                return Err(corrupt(&format!(
                    "the image header gives NumberOfFrames = {v}"
                )))
            }
        };
        let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .map(|p| p.to_ascii_uppercase())
            .ok_or_else(|| corrupt("the image header has no PhotometricInterpretation"))?;
        Ok(PixelModule {
            rows: rows.into(),
            columns: columns.into(),
            samples_per_pixel,
            photometric,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            frames,
            transfer_syntax: obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string(),
        })
    }

    fn check_supported(&self) -> Result<(), DecodeError> {
        let unsupported = |detail: String| Err(DecodeError::DicomUnsupportedImage { detail });
        let photometric = self.photometric.as_str();
        let jpeg = matches!(Syntax::from_uid(&self.transfer_syntax), Ok(Syntax::Jpeg));
        match (self.samples_per_pixel, photometric) {
            (1, "MONOCHROME1" | "MONOCHROME2") => {}
            (3, "RGB") => {}
            // The JPEG decoder returns RGB for YBR-coded colour.
            (3, "YBR_FULL" | "YBR_FULL_422") if jpeg => {}
            (1, p) | (3, p) => {
                return unsupported(format!(
                    "photometric interpretation {p} (grey MONOCHROME1/2 or RGB are read)"
                ))
            }
            (n, _) => return unsupported(format!("{n} samples per pixel (1 or 3 are read)")),
        }
        if self.bits_allocated != 8 && self.bits_allocated != 16 {
            return unsupported(format!(
                "{} bits allocated per sample (8 or 16 are read)",
                self.bits_allocated
            ));
        }
        if !(8..=16).contains(&self.bits_stored) || self.bits_stored > self.bits_allocated {
            return unsupported(format!(
                "{} bits stored in {} allocated (8 to 16 stored are read)",
                self.bits_stored, self.bits_allocated
            ));
        }
        if self.high_bit + 1 < self.bits_stored || self.high_bit >= self.bits_allocated {
            return Err(corrupt(&format!(
                "the image header gives HighBit = {} for {} bits stored in {} allocated",
                self.high_bit, self.bits_stored, self.bits_allocated
            )));
        }
        if self.samples_per_pixel == 3 && self.bits_allocated != 8 {
            return unsupported("colour with more than 8 bits per sample".to_string());
        }
        Ok(())
    }

    fn frame_bytes(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bits_allocated / 8)
    }

    /// Native pixel data must hold every frame the header announces.
    fn check_native_length(&self, len: usize) -> Result<(), DecodeError> {
        let needed = self.frame_bytes().saturating_mul(u64::from(self.frames));
        if (len as u64) < needed {
            return Err(DecodeError::Truncated(Format::Dicom));
        }
        Ok(())
    }

    /// The RLE decoder slices its header and indexes each decoded segment without checking:
    /// a short fragment or a short segment would panic there.
    fn check_rle(&self, fragment: &[u8]) -> Result<(), DecodeError> {
        let header = fragment
            .get(..64)
            .ok_or_else(|| corrupt("its RLE data is shorter than the RLE header"))?;
        let word = |i: usize| {
            u32::from_le_bytes([
                header[4 * i],
                header[4 * i + 1],
                header[4 * i + 2],
                header[4 * i + 3],
            ])
        };
        let segments = word(0) as usize;
        let expected = usize::from(self.samples_per_pixel) * usize::from(self.bits_allocated / 8);
        if segments != expected {
            return Err(corrupt(&format!(
                "its RLE data has {segments} segments where the header calls for {expected}"
            )));
        }
        let pixels = u64::from(self.rows) * u64::from(self.columns);
        for i in 1..=segments {
            let start = word(i) as usize;
            let end = if i < segments {
                word(i + 1) as usize
            } else {
                fragment.len()
            };
            let segment = fragment
                .get(start..end)
                .filter(|_| start >= 64)
                .ok_or_else(|| corrupt("its RLE segment table points outside the data"))?;
            match packbits_len(segment) {
                Some(n) if n >= pixels && n <= 2 * pixels + 1024 => {}
                Some(n) if n < pixels => return Err(DecodeError::Truncated(Format::Dicom)),
                _ => return Err(corrupt("an RLE segment does not decode to one frame")),
            }
        }
        Ok(())
    }

    /// The JPEG decoder copies its output into a buffer sized from Rows × Columns without a
    /// bounds check, and allocates from the JPEG's own frame header: both must agree with the
    /// DICOM header, which has passed the size limits.
    fn check_jpeg(&self, data: &[u8]) -> Result<(), DecodeError> {
        let sof = jpeg_frame_header(data)?;
        let unsupported_syntax = |what: &str| {
            Err(DecodeError::DicomUnsupportedSyntax {
                name: what.to_string(),
                uid: printable(&self.transfer_syntax, 64),
            })
        };
        match sof.marker {
            0xC0..=0xC2 if sof.precision == 8 => {}
            0xC1 | 0xC2 if sof.precision == 12 => {
                return unsupported_syntax("JPEG Extended with 12-bit samples")
            }
            0xC3 if (2..=16).contains(&sof.precision) => {}
            0xC0..=0xC3 => {
                return Err(corrupt(&format!(
                    "its JPEG data declares {}-bit samples",
                    sof.precision
                )))
            }
            0xC5..=0xC7 => return unsupported_syntax("hierarchical JPEG"),
            _ => return unsupported_syntax("JPEG with arithmetic coding"),
        }
        if u32::from(sof.width) != self.columns || u32::from(sof.height) != self.rows {
            return Err(corrupt(&format!(
                "its JPEG image is {}×{} pixels but the DICOM header says {}×{}",
                sof.width, sof.height, self.columns, self.rows
            )));
        }
        if u16::from(sof.components) != self.samples_per_pixel {
            return Err(corrupt(&format!(
                "its JPEG image has {} components but the DICOM header says {} samples per pixel",
                sof.components, self.samples_per_pixel
            )));
        }
        let bits = if sof.precision > 8 { 16 } else { 8 };
        if bits != self.bits_allocated {
            return Err(DecodeError::DicomUnsupportedImage {
                detail: format!(
                    "JPEG with {}-bit samples in {} bits allocated",
                    sof.precision, self.bits_allocated
                ),
            });
        }
        Ok(())
    }
}

fn first_fragment(fragments: &[Vec<u8>]) -> Result<&[u8], DecodeError> {
    fragments
        .first()
        .map(Vec::as_slice)
        .ok_or(DecodeError::Truncated(Format::Dicom))
}

/// The bytes the JPEG decoder will read for frame 0 (same selection as dicom-pixeldata 0.10).
fn jpeg_frame_zero<'a>(
    fragments: &'a [Vec<u8>],
    offset_table: &[u32],
    frames: u32,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    if fragments.len() == 1 || fragments.len() == frames as usize {
        return first_fragment(fragments).map(Cow::Borrowed);
    }
    let base = offset_table.first().copied().unwrap_or(0) as usize;
    let next = offset_table.get(1).map(|&o| o as usize);
    let mut offset = 0usize;
    let mut data = Vec::new();
    for fragment in fragments {
        if offset >= base {
            data.extend_from_slice(fragment);
        }
        offset += fragment.len() + 8;
        if next.is_some_and(|next| offset >= next) {
            break;
        }
    }
    Ok(Cow::Owned(data))
}

struct JpegFrameHeader {
    marker: u8,
    precision: u8,
    height: u16,
    width: u16,
    components: u8,
}

/// Finds the first start-of-frame segment, walking the marker segments from SOI.
fn jpeg_frame_header(data: &[u8]) -> Result<JpegFrameHeader, DecodeError> {
    let cut = || DecodeError::Truncated(Format::Dicom);
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt("its JPEG data does not start with a JPEG marker"));
    }
    let mut pos = 2usize;
    loop {
        if *data.get(pos).ok_or_else(cut)? != 0xFF {
            return Err(corrupt("its JPEG data has a damaged marker segment"));
        }
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *data.get(pos).ok_or_else(cut)?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD8 => continue,
            0xD9 | 0xDA => return Err(corrupt("its JPEG data has no frame header")),
            _ => {}
        }
        let len_bytes = data.get(pos..pos + 2).ok_or_else(cut)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(corrupt("its JPEG data has a damaged marker segment"));
        }
        let segment = data.get(pos + 2..pos + len).ok_or_else(cut)?;
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let s = segment
                .get(..6)
                .ok_or_else(|| corrupt("its JPEG frame header is short"))?;
            return Ok(JpegFrameHeader {
                marker,
                precision: s[0],
                height: u16::from_be_bytes([s[1], s[2]]),
                width: u16::from_be_bytes([s[3], s[4]]),
                components: s[5],
            });
        }
        pos += len;
    }
}

/// Decoded length of a PackBits segment, read the way dicom-pixeldata's reader reads it;
/// `None` when a run is cut off.
fn packbits_len(segment: &[u8]) -> Option<u64> {
    let mut out = 0u64;
    let mut i = 0usize;
    while i < segment.len() {
        let h = segment[i] as i8;
        i += 1;
        match h {
            -127..=-1 => {
                segment.get(i)?;
                out += (1 - i64::from(h)) as u64;
                i += 1;
            }
            0..=127 => {
                let n = h as usize + 1;
                out += n.min(segment.len() - i) as u64;
                i += n;
            }
            -128 => {}
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Pixel values

fn rgb_to_gray(
    decoded: &dicom_pixeldata::DecodedPixelData<'_>,
    columns: u32,
    rows: u32,
) -> Result<GrayImage, DecodeError> {
    let pixels = columns as usize * rows as usize;
    let data = decoded
        .data()
        .get(..3 * pixels)
        .ok_or_else(|| corrupt("the decoded pixel data is shorter than Rows × Columns"))?;
    let gray: Vec<u8> = match decoded.planar_configuration() {
        dicom_pixeldata::PlanarConfiguration::Standard => data
            .chunks_exact(3)
            .map(|p| bt601_gray(p[0], p[1], p[2]))
            .collect(),
        dicom_pixeldata::PlanarConfiguration::PixelFirst => (0..pixels)
            .map(|i| bt601_gray(data[i], data[pixels + i], data[2 * pixels + i]))
            .collect(),
    };
    GrayImage::from_raw(columns, rows, gray)
        .ok_or_else(|| corrupt("the decoded pixel data does not match Rows × Columns"))
}

/// A lookup table from the file (Modality LUT or VOI LUT Sequence item).
#[derive(Debug, Clone, PartialEq)]
struct Lut {
    first: i32,
    entries: Vec<u16>,
    bits: u16,
}

impl Lut {
    fn read(item: &InMemDicomObject, signed_input: bool) -> Option<Lut> {
        let descriptor = item.get(tags::LUT_DESCRIPTOR)?.to_multi_int::<i32>().ok()?;
        let [count, first, bits] = descriptor.get(..3)?.try_into().ok()?;
        // 0 means 65536 (the count does not fit US); a writer using UL, SL or IS may also write
        // 65536 itself. Anything else outside 1..=65536 is not a LUT this decoder can use.
        let count = match count {
            0 | 65536 => 65536,
            1..=65535 => count as usize,
            _ => return None,
        };
        // Stored as US or SS depending on the writer; a first value above 32767 only makes
        // sense as a negative one when the input can be negative.
        let first = if signed_input && first > 32767 {
            first - 65536
        } else {
            first
        };
        let bits = u16::try_from(bits).ok().filter(|b| (8..=16).contains(b))?;
        let data = item.get(tags::LUT_DATA)?.to_bytes().ok()?;
        let entries: Vec<u16> = if data.len() >= 2 * count {
            data.chunks_exact(2)
                .take(count)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .collect()
        } else if bits == 8 && data.len() >= count {
            data[..count].iter().map(|&b| u16::from(b)).collect()
        } else {
            return None;
        };
        let max = ((1u32 << bits) - 1) as u16;
        Some(Lut {
            first,
            entries: entries.into_iter().map(|e| e.min(max)).collect(),
            bits,
        })
    }

    fn max_out(&self) -> f64 {
        f64::from((1u32 << self.bits) - 1)
    }

    /// The entry for `x`, clamped to the table (never empty: `read` takes 1 to 65536 entries).
    fn get(&self, x: f64) -> f64 {
        let last = self.entries.len() as f64 - 1.0;
        let i = (x.round() - f64::from(self.first)).clamp(0.0, last) as usize;
        f64::from(self.entries[i])
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Modality {
    Rescale { slope: f64, intercept: f64 },
    Lut(Lut),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq)]
enum Voi {
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    Lut(Lut),
    FullRange,
}

/// Stored value → 8-bit grey, as documented at the top of this module. The only place where
/// grey pixel values are transformed.
#[derive(Debug, Clone, PartialEq)]
struct PixelMapping {
    min_stored: i32,
    max_stored: i32,
    modality: Modality,
    voi: Voi,
    invert: bool,
}

impl PixelMapping {
    fn from_object(obj: &InMemDicomObject, px: &PixelModule, warnings: &mut Vec<String>) -> Self {
        let (min_stored, max_stored) = if px.signed {
            (
                -(1i32 << (px.bits_stored - 1)),
                (1i32 << (px.bits_stored - 1)) - 1,
            )
        } else {
            (0, (1i32 << px.bits_stored) - 1)
        };
        let transformation = Some(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE);
        let slope = float(lookup(obj, tags::RESCALE_SLOPE, transformation));
        let intercept = float(lookup(obj, tags::RESCALE_INTERCEPT, transformation)).unwrap_or(0.0);
        let modality_lut = first_item(obj, tags::MODALITY_LUT_SEQUENCE)
            .and_then(|item| Lut::read(item, px.signed));
        let modality = match (modality_lut, slope) {
            (Some(lut), _) => Modality::Lut(lut),
            (None, Some(slope)) if slope != 0.0 => Modality::Rescale { slope, intercept },
            (None, Some(_)) => {
                warnings.push("the DICOM file gives a RescaleSlope of 0: ignored".to_string());
                Modality::Rescale {
                    slope: 1.0,
                    intercept,
                }
            }
            (None, None) => Modality::Rescale {
                slope: 1.0,
                intercept,
            },
        };
        let can_be_negative = match &modality {
            Modality::Rescale { slope, intercept } => px.signed || *intercept < 0.0 || *slope < 0.0,
            Modality::Lut(_) => false,
        };

        let frame_voi = Some(tags::FRAME_VOILUT_SEQUENCE);
        let center = float(lookup(obj, tags::WINDOW_CENTER, frame_voi));
        let width = float(lookup(obj, tags::WINDOW_WIDTH, frame_voi));
        let function = lookup(obj, tags::VOILUT_FUNCTION, frame_voi)
            .and_then(|e| e.to_str().ok())
            .map(|f| f.trim_matches(['\0', ' ']).to_ascii_uppercase());
        let function = match function.as_deref() {
            Some("LINEAR_EXACT") => VoiFunction::LinearExact,
            Some("SIGMOID") => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        };
        let window = match (center, width) {
            (Some(center), Some(width)) => {
                let valid = match function {
                    VoiFunction::Linear => width >= 1.0,
                    _ => width > 0.0,
                };
                if !valid {
                    warnings.push(format!(
                        "the DICOM window has an invalid width ({width}): ignored"
                    ));
                }
                valid.then_some(Voi::Window {
                    center,
                    width,
                    function,
                })
            }
            _ => None,
        };
        let voi_lut = || {
            first_item(obj, tags::VOILUT_SEQUENCE)
                .and_then(|item| Lut::read(item, can_be_negative))
                .map(Voi::Lut)
        };
        let voi = window.or_else(voi_lut).unwrap_or(Voi::FullRange);
        PixelMapping {
            min_stored,
            max_stored,
            modality,
            voi,
            invert: px.photometric == "MONOCHROME1",
        }
    }

    fn modality(&self, stored: i32) -> f64 {
        match &self.modality {
            Modality::Rescale { slope, intercept } => f64::from(stored) * slope + intercept,
            Modality::Lut(lut) => lut.get(f64::from(stored)),
        }
    }

    /// Modality output → 0..255 (real).
    fn voi(&self, x: f64) -> f64 {
        const Y: f64 = 255.0;
        match &self.voi {
            Voi::Window {
                center: c,
                width: w,
                function: VoiFunction::Linear,
            } => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    Y
                } else {
                    ((x - (c - 0.5)) / (w - 1.0) + 0.5) * Y
                }
            }
            Voi::Window {
                center: c,
                width: w,
                function: VoiFunction::LinearExact,
            } => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    Y
                } else {
                    ((x - c) / w + 0.5) * Y
                }
            }
            Voi::Window {
                center: c,
                width: w,
                function: VoiFunction::Sigmoid,
            } => Y / (1.0 + (-4.0 * (x - c) / w).exp()),
            Voi::Lut(lut) => lut.get(x) / lut.max_out() * Y,
            Voi::FullRange => {
                let (lo, hi) = match &self.modality {
                    Modality::Lut(lut) => (0.0, lut.max_out()),
                    Modality::Rescale { .. } => {
                        let a = self.modality(self.min_stored);
                        let b = self.modality(self.max_stored);
                        (a.min(b), a.max(b))
                    }
                };
                (x - lo) / (hi - lo) * Y
            }
        }
    }

    /// One grey value per possible stored value.
    fn table(&self) -> Vec<u8> {
        (self.min_stored..=self.max_stored)
            .map(|s| {
                let y = self.voi(self.modality(s));
                let y = if y.is_nan() {
                    0
                } else {
                    y.round().clamp(0.0, 255.0) as u8
                };
                if self.invert {
                    255 - y
                } else {
                    y
                }
            })
            .collect()
    }

    /// Maps frame 0's samples (one per pixel, in native byte order as dicom-pixeldata hands
    /// them over) to grey: the stored value is the `BitsStored` bits ending at `HighBit`,
    /// sign-extended when signed, and indexes the table.
    fn apply(&self, data: &[u8], px: &PixelModule) -> Result<Vec<u8>, DecodeError> {
        let table = self.table();
        let pixels = px.rows as usize * px.columns as usize;
        let shift = px.high_bit + 1 - px.bits_stored;
        let mask = (1u32 << px.bits_stored) - 1;
        let sign = 1u32 << (px.bits_stored - 1);
        let grey = |raw: u32| {
            let v = (raw >> shift) & mask;
            let stored = if px.signed && v & sign != 0 {
                v as i32 - (mask as i32 + 1)
            } else {
                v as i32
            };
            table[(stored.clamp(self.min_stored, self.max_stored) - self.min_stored) as usize]
        };
        let short = || corrupt("the decoded pixel data is shorter than Rows × Columns");
        Ok(if px.bits_allocated == 8 {
            let data = data.get(..pixels).ok_or_else(short)?;
            data.iter().map(|&b| grey(u32::from(b))).collect()
        } else {
            let data = data.get(..pixels * 2).ok_or_else(short)?;
            data.chunks_exact(2)
                .map(|b| grey(u32::from(u16::from_ne_bytes([b[0], b[1]]))))
                .collect()
        })
    }
}
