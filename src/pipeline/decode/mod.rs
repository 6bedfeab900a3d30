//! Bytes of an image file → 8-bit grey image, as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` gives.
//! Owns format sniffing, size limits (checked from the header before any large allocation), and errors.
//!
//! What "as cv2 gives" means, measured against opencv-python 4.12 (libpng 1.6, libjpeg-turbo):
//!
//! - PNG grey: unchanged. 1/2/4-bit grey is scaled up to 0..255.
//! - PNG colour (RGB, RGBA, palette): libpng's `rgb_to_gray` with OpenCV's coefficients, which
//!   *truncates*: `(9797·R + 19234·G + 3737·B) >> 15`, and `R` itself when `R = G = B`. If the
//!   file declares a gamma (`gAMA`, or `sRGB` = 1/2.2) that differs from 1 by more than 5 %,
//!   libpng mixes the channels in linear light through its 8-bit gamma tables; reproduced here.
//! - Alpha is dropped, not composited (grey+alpha and RGBA alike).
//! - 16-bit PNG: the high byte is kept (`v >> 8`, not `(v + 128) / 257` as the `image` crate
//!   would round); colour is mixed at 16 bits first (`(9797·R + 19234·G + 3737·B + 16384) >> 15`).
//!   Not reproduced: 16-bit colour PNG with a declared gamma, where libpng uses 16-bit gamma
//!   tables; grey content then differs by at most 1, saturated colour by more.
//! - JPEG: the decoder's luma (Y) plane, as libjpeg gives for a grey request (no RGB round
//!   trip). The IDCT is not libjpeg's, so pixels may differ by ±1. CMYK/YCCK JPEGs are
//!   converted through RGB (approximate: a CMYK sample was off by one everywhere).
//! - The EXIF orientation tag (JPEG APP1, PNG eXIf) is applied, as `cv2.imread` does.
//!
//! DICOM (recognised by "DICM" after the 128-byte preamble, whatever the file is called) is
//! decoded by `dicom`, which documents its own pixel mapping.
//!
//! The decoder only reads the given byte slice; it never opens files.

use image::GrayImage;

pub mod dicom; // DICOM Part 10 → grey + header facts, split by concern
pub mod limits; // size limits, formats and errors shared by every decoder
pub mod png_jpeg; // PNG and JPEG with OpenCV's grey semantics

use crate::record::DicomInfo;
use limits::check_file_bytes;
pub use limits::{megabytes, DecodeError, Format, Limits};
use png_jpeg::{apply_orientation, decode_jpeg, decode_png};

/// Recognises the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM") {
        // Part 10, with its 128-byte preamble or (from some writers) without it.
        Some(Format::Dicom)
    } else {
        None
    }
}

/// A decoded image with what the format adds to the result record.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub gray: GrayImage,
    pub format: Format,
    /// Header facts of a DICOM file (never the patient's identity); `None` for PNG/JPEG.
    pub dicom: Option<DicomInfo>,
    /// For the technician, e.g. "multi-frame: only the first frame was graded".
    pub warnings: Vec<String>,
}

/// Decodes PNG, JPEG or DICOM bytes into an 8-bit grey image (see `decode_gray`) and keeps
/// the DICOM header facts and warnings. Never panics on bad input.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    check_file_bytes(bytes, limits)?;
    let (gray, orientation, format) = match sniff(bytes) {
        Some(Format::Png) => {
            let (gray, orientation) = decode_png(bytes, limits)?;
            (gray, orientation, Format::Png)
        }
        Some(Format::Jpeg) => {
            let (gray, orientation) = decode_jpeg(bytes, limits)?;
            (gray, orientation, Format::Jpeg)
        }
        Some(Format::Dicom) => {
            let d = dicom::decode_dicom(bytes, limits)?;
            return Ok(Decoded {
                gray: d.gray,
                format: Format::Dicom,
                dicom: Some(d.info),
                warnings: d.warnings,
            });
        }
        None => {
            return Err(DecodeError::NotAnImage {
                what: describe_foreign(bytes),
            })
        }
    };
    Ok(Decoded {
        gray: apply_orientation(gray, orientation),
        format,
        dicom: None,
        warnings: Vec::new(),
    })
}

/// Decodes a PNG, JPEG or DICOM file's bytes into an 8-bit grey image: PNG and JPEG with
/// `cv2.IMREAD_GRAYSCALE` semantics (see the module documentation), DICOM with the mapping
/// documented in `dicom`. Never panics on bad input.
pub fn decode_gray(bytes: &[u8], limits: &Limits) -> Result<GrayImage, DecodeError> {
    decode(bytes, limits).map(|d| d.gray)
}

/// What a file that is not PNG, JPEG or DICOM Part 10 looks like, with what to do about it, or
/// else its first few bytes, readable (quoted text if printable, hex otherwise).
fn describe_foreign(bytes: &[u8]) -> String {
    const KNOWN: [(&[u8], &str); 9] = [
        (b"II*\0", "a TIFF image"),
        (b"MM\0*", "a TIFF image"),
        (b"\0\0\0\x0cjP  ", "a JPEG 2000 image"),
        (b"\xFF\x4F\xFF\x51", "a JPEG 2000 image"),
        (b"GIF8", "a GIF image"),
        (b"BM", "a BMP image"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a ZIP archive (unpack it first)"),
        // DICOM elements of group 0008 in little endian: a data set written without the Part 10
        // header (old ACR-NEMA style, or a raw dump).
        (
            b"\x08\0",
            "a DICOM data set without its file header (\"DICM\")",
        ),
    ];
    if let Some((_, what)) = KNOWN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return format!("it looks like {what}; export the image as PNG, JPEG or DICOM");
    }
    if bytes.get(8..12) == Some(b"WEBP") && bytes.starts_with(b"RIFF") {
        return "it looks like a WebP image; export the image as PNG, JPEG or DICOM".into();
    }
    let head = &bytes[..bytes.len().min(8)];
    let start = if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02X}")).collect();
        format!("bytes {}", hex.join(" "))
    };
    format!("the file starts with {start}")
}
