//! PNG and JPEG bytes → 8-bit grey as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` gives (see the
//! `decode` module documentation for what that means, measured), and the EXIF orientation.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use crate::pipeline::decode::limits::{check_size, DecodeError, Format, Limits};

pub fn apply_orientation(gray: GrayImage, orientation: Orientation) -> GrayImage {
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

pub fn decode_png(bytes: &[u8], limits: &Limits) -> Result<(GrayImage, Orientation), DecodeError> {
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

pub fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<(GrayImage, Orientation), DecodeError> {
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
pub fn bt601_gray(r: u8, g: u8, b: u8) -> u8 {
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
