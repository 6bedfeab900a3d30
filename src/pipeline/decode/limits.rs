//! What every format's decoder shares, below them all: the size limits checked before any pixel
//! buffer exists, the formats' names, and the errors a technician reads.

use std::fmt;

/// Image container formats recognised by content (never by file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Dicom,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG",
            Format::Dicom => "DICOM",
        })
    }
}

/// Size limits checked before decoding, so a hostile or corrupt header cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 16384,
            max_height: 16384,
            max_pixels: 100_000_000,
            max_file_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why an image could not be read. Each message is one line meant for a technician.
#[derive(thiserror::Error, Debug)]
pub enum DecodeError {
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("the file is {}, more than the limit of {} for one image", megabytes(*size), megabytes(*max))]
    FileTooLarge { size: u64, max: u64 },
    /// `what`: what the file looks like instead, or how it starts.
    #[error("not a PNG, JPEG or DICOM image: {what}")]
    NotAnImage { what: String },
    #[error(
        "DICOM {name} ({uid}) is not supported: export the image uncompressed or as JPEG baseline"
    )]
    DicomUnsupportedSyntax { name: String, uid: String },
    #[error("this DICOM image is not supported: {detail}")]
    DicomUnsupportedImage { detail: String },
    #[error("the DICOM file has no pixel data ({sop_class}): it is not an image (a report or presentation state?) or it was cut short")]
    DicomNoPixelData { sop_class: String },
    #[error("the DICOM data set is larger than {max} bytes once inflated, more than the file size limit")]
    DicomInflatedTooLarge { max: u64 },
    #[error("the image is {width}×{height} pixels, more than the size limit")]
    TooLarge { width: u32, height: u32 },
    #[error("the {0} file is truncated (it ends before the image data does)")]
    Truncated(Format),
    #[error("the {format} file is damaged: {detail}")]
    Corrupt { format: Format, detail: String },
}

/// Refuses an empty file, or one over the size limit, before anything is parsed.
pub fn check_file_bytes(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let size = bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge {
            size,
            max: limits.max_file_bytes,
        });
    }
    Ok(())
}

/// Refuses a header whose size is over the limits (or zero) before any pixel buffer exists.
pub fn check_size(
    format: Format,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(), DecodeError> {
    if width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(DecodeError::TooLarge { width, height });
    }
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            format,
            detail: format!("the header gives a size of {width}×{height} pixels"),
        });
    }
    Ok(())
}

/// A size in bytes for people: "3.0 MB", "512 KB".
pub fn megabytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        b => format!("{} KB", b.div_ceil(1024)),
    }
}
