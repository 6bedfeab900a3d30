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
//! decoded by `crate::dicom`, which documents its own pixel mapping.
//!
//! The decoder only reads the given byte slice; it never opens files.

use std::fmt;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use crate::dicom::{self, DicomInfo};

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

/// Refuses an empty file, or one over the size limit, before anything is parsed.
pub(crate) fn check_file_bytes(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
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
/// documented in `crate::dicom`. Never panics on bad input.
pub fn decode_gray(bytes: &[u8], limits: &Limits) -> Result<GrayImage, DecodeError> {
    decode(bytes, limits).map(|d| d.gray)
}

pub(crate) fn check_size(
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

/// A size in bytes for people: "3.0 MB", "512 KB".
pub fn megabytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        b => format!("{} KB", b.div_ceil(1024)),
    }
}

fn apply_orientation(gray: GrayImage, orientation: Orientation) -> GrayImage {
    if orientation == Orientation::NoTransforms {
        return gray;
    }
    let mut img = DynamicImage::ImageLuma8(gray);
    img.apply_orientation(orientation);
    img.into_luma8()
}

fn exif_orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

// ---------------------------------------------------------------------------------------------
// PNG

fn png_error(e: png::DecodingError) -> DecodeError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated(Format::Png)
        }
        other => DecodeError::Corrupt {
            format: Format::Png,
            detail: other.to_string(),
        },
    }
}

fn decode_png(bytes: &[u8], limits: &Limits) -> Result<(GrayImage, Orientation), DecodeError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Only the IHDR chunk is read here: the size is checked before anything else is allocated.
    let header = decoder.read_header_info().map_err(png_error)?;
    let (width, height) = (header.width, header.height);
    check_size(Format::Png, width, height, limits)?;

    // EXPAND: palette → RGB, 1/2/4-bit grey → 8-bit (scaled), tRNS → alpha (dropped below).
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let info = reader.info();
    let orientation = exif_orientation(info.exif_metadata.as_deref());
    // An sRGB chunk means gamma 1/2.2 to libpng. It only builds its gamma tables for a gamma
    // that is "significant" (more than 5 % away from 1).
    let gamma = match info.srgb {
        Some(_) => Some(45_455),
        None => info.gama_chunk.map(|g| g.into_scaled()),
    }
    .filter(|&g| !(95_000..=105_000).contains(&g));
    let (color, depth) = reader.output_color_type();
    let to_gray = RowToGray::new(color, depth, gamma);

    let mut out = vec![0u8; width as usize * height as usize];
    let mut gray_row = vec![0u8; width as usize];
    let mut next_line = 0usize;
    while let Some(row) = reader.next_interlaced_row().map_err(png_error)? {
        let n = to_gray.convert(row.data(), &mut gray_row);
        match row.interlace() {
            png::InterlaceInfo::Adam7(pass) => {
                png::expand_interlaced_row(&mut out, width as usize, &gray_row[..n], pass, 8)
            }
            png::InterlaceInfo::Null(_) => {
                let start = next_line * width as usize;
                if let Some(dst) = out.get_mut(start..start + n) {
                    dst.copy_from_slice(&gray_row[..n]);
                }
                next_line += 1;
            }
        }
    }
    let gray = GrayImage::from_raw(width, height, out).ok_or_else(|| DecodeError::Corrupt {
        format: Format::Png,
        detail: "decoded data does not match the header size".into(),
    })?;
    Ok((gray, orientation))
}

/// Converts one decoded PNG row (after EXPAND) to grey the way libpng does for OpenCV.
struct RowToGray {
    channels: usize,
    sixteen_bit: bool,
    /// libpng's 8-bit gamma tables (to linear, from linear), when the file declares a gamma.
    gamma_tables: Option<([u8; 256], [u8; 256])>,
}

/// OpenCV asks libpng for 0.299/0.587 (red/green); libpng turns them into 15-bit integers by
/// truncation (29900·32768/100000) and gives blue the remainder.
const RED: u32 = 9797;
const GREEN: u32 = 19234;
const BLUE: u32 = 32768 - RED - GREEN;

impl RowToGray {
    fn new(color: png::ColorType, depth: png::BitDepth, gamma: Option<u32>) -> Self {
        let channels = match color {
            png::ColorType::Grayscale | png::ColorType::Indexed => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
        };
        let sixteen_bit = depth == png::BitDepth::Sixteen;
        let gamma_tables = match gamma {
            Some(g) if channels >= 3 && !sixteen_bit && g > 0 => Some((
                libpng_gamma_table(libpng_reciprocal(g)),
                libpng_gamma_table(g),
            )),
            _ => None,
        };
        RowToGray {
            channels,
            sixteen_bit,
            gamma_tables,
        }
    }

    /// Writes the grey pixels of `row` into `out`; returns how many.
    fn convert(&self, row: &[u8], out: &mut [u8]) -> usize {
        let bytes_per_sample = if self.sixteen_bit { 2 } else { 1 };
        let pixels = row.chunks_exact(self.channels * bytes_per_sample);
        let n = pixels.len().min(out.len());
        for (px, o) in pixels.zip(out.iter_mut()) {
            *o = if self.sixteen_bit {
                let s = |i: usize| u32::from(u16::from_be_bytes([px[2 * i], px[2 * i + 1]]));
                let v = if self.channels >= 3 {
                    let (r, g, b) = (s(0), s(1), s(2));
                    (RED * r + GREEN * g + BLUE * b + 16384) >> 15
                } else {
                    s(0)
                };
                (v >> 8) as u8 // keep the high byte, as libpng's strip_16 does
            } else if self.channels >= 3 {
                self.rgb8(px[0], px[1], px[2])
            } else {
                px[0]
            };
        }
        n
    }

    fn rgb8(&self, r: u8, g: u8, b: u8) -> u8 {
        if r == g && g == b {
            return r;
        }
        let mix =
            |r: u8, g: u8, b: u8| RED * u32::from(r) + GREEN * u32::from(g) + BLUE * u32::from(b);
        match &self.gamma_tables {
            // "the historical approach which simply truncates the results" (libpng)
            None => (mix(r, g, b) >> 15) as u8,
            Some((to_linear, from_linear)) => {
                let lin = |v: u8| to_linear[usize::from(v)];
                let m = (mix(lin(r), lin(g), lin(b)) + 16384) >> 15;
                from_linear[m.min(255) as usize]
            }
        }
    }
}

/// libpng's `png_reciprocal` on its ×100000 fixed-point gammas.
fn libpng_reciprocal(g: u32) -> u32 {
    (1e10 / f64::from(g) + 0.5).floor() as u32
}

/// libpng's `png_build_8bit_table`: `floor(255·(i/255)^(g/100000) + 0.5)`, ends fixed.
fn libpng_gamma_table(g: u32) -> [u8; 256] {
    let exponent = f64::from(g) * 0.00001;
    std::array::from_fn(|i| {
        if i == 0 || i == 255 {
            i as u8
        } else {
            (255.0 * (i as f64 / 255.0).powf(exponent) + 0.5).floor() as u8
        }
    })
}

// ---------------------------------------------------------------------------------------------
// JPEG

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    match e {
        zune_jpeg::errors::DecodeErrors::ExhaustedData => DecodeError::Truncated(Format::Jpeg),
        other => DecodeError::Corrupt {
            format: Format::Jpeg,
            detail: other.to_string(),
        },
    }
}

fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<(GrayImage, Orientation), DecodeError> {
    // The lenient decoder fills a cut-off scan with grey instead of failing (as libjpeg does);
    // a file without an end-of-image marker after its last scan is refused instead.
    if !jpeg_has_end_marker(bytes) {
        return Err(DecodeError::Truncated(Format::Jpeg));
    }
    let options = DecoderOptions::default()
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    // Reads only the headers: the size is checked before the pixel buffer is allocated.
    decoder.decode_headers().map_err(jpeg_error)?;
    let (width, height) = decoder.dimensions().ok_or_else(|| DecodeError::Corrupt {
        format: Format::Jpeg,
        detail: "no frame header".into(),
    })?;
    let (width, height) = (width as u32, height as u32);
    check_size(Format::Jpeg, width, height, limits)?;
    let orientation = exif_orientation(decoder.exif().map(Vec::as_slice));

    // libjpeg, asked for grey, returns the Y plane untouched; zune-jpeg does the same when
    // asked for Luma. Other colour models go through RGB.
    let input = decoder.input_colorspace();
    let luma = matches!(input, Some(ColorSpace::YCbCr | ColorSpace::Luma));
    let out_space = if luma {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out_space));
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let pixels = if luma {
        pixels
    } else {
        pixels
            .chunks_exact(3)
            .map(|p| bt601_gray(p[0], p[1], p[2]))
            .collect()
    };
    let gray = GrayImage::from_raw(width, height, pixels).ok_or_else(|| DecodeError::Corrupt {
        format: Format::Jpeg,
        detail: "decoded data does not match the header size".into(),
    })?;
    Ok((gray, orientation))
}

/// OpenCV's `cvtColor` RGB→grey weights (14-bit fixed point, rounded).
pub(crate) fn bt601_gray(r: u8, g: u8, b: u8) -> u8 {
    ((4899 * u32::from(r) + 9617 * u32::from(g) + 1868 * u32::from(b) + 8192) >> 14) as u8
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Neither byte pair can occur inside entropy-coded data (FF is always escaped there).
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}
