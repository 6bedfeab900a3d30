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

mod attributes; // single attributes of a parsed data set
pub mod identity; // patient identity: read only on request, never stored
mod mapping; // stored values → 8-bit grey (modality, VOI, MONOCHROME1)
mod pixel_module; // the Image Pixel module and the decoders' preconditions
pub mod policy; // is it a radiograph; does it show more than one knee
mod structure; // file meta, transfer syntax, element lengths, inflation

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::PixelDecoder;
use image::GrayImage;

use crate::pipeline::decode::limits::{check_size, DecodeError, Format, Limits};
use crate::record::{DicomInfo, SpacingSource};
use attributes::*;
use mapping::*;
use pixel_module::*;
use policy::*;
use structure::*;

/// An error and its sources on one line (also for the DICOM network node's log lines).
pub use structure::chain as error_chain;

/// A decoded DICOM radiograph: the grey image the preprocessing takes, the header facts kept in
/// the result record, and warnings for the technician.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub gray: GrayImage,
    pub info: DicomInfo,
    pub warnings: Vec<String>,
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
        patient_orientation: text(&obj, tags::PATIENT_ORIENTATION),
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
    Ok(DicomImage {
        gray,
        info,
        warnings,
    })
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
