//! The Image Pixel module: what the pixel data claims to be, checked against what the decoders
//! rely on (native length, RLE segments, JPEG frame header) before they run.

use std::borrow::Cow;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use image::GrayImage;

use super::attributes::*;
use super::structure::*;
use crate::pipeline::decode::limits::{DecodeError, Format};
use crate::pipeline::decode::png_jpeg::bt601_gray;

/// The Image Pixel module attributes the decoding depends on.
pub struct PixelModule {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u16,
    pub photometric: String,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub frames: u32,
    pub transfer_syntax: String,
}

impl PixelModule {
    pub fn read(obj: &DefaultDicomObject) -> Result<PixelModule, DecodeError> {
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

    pub fn check_supported(&self) -> Result<(), DecodeError> {
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

    pub fn frame_bytes(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.samples_per_pixel)
            * u64::from(self.bits_allocated / 8)
    }

    /// Native pixel data must hold every frame the header announces.
    pub fn check_native_length(&self, len: usize) -> Result<(), DecodeError> {
        let needed = self.frame_bytes().saturating_mul(u64::from(self.frames));
        if (len as u64) < needed {
            return Err(DecodeError::Truncated(Format::Dicom));
        }
        Ok(())
    }

    /// The RLE decoder slices its header and indexes each decoded segment without checking:
    /// a short fragment or a short segment would panic there.
    pub fn check_rle(&self, fragment: &[u8]) -> Result<(), DecodeError> {
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
    pub fn check_jpeg(&self, data: &[u8]) -> Result<(), DecodeError> {
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

pub fn first_fragment(fragments: &[Vec<u8>]) -> Result<&[u8], DecodeError> {
    fragments
        .first()
        .map(Vec::as_slice)
        .ok_or(DecodeError::Truncated(Format::Dicom))
}

/// The bytes the JPEG decoder will read for frame 0 (same selection as dicom-pixeldata 0.10).
pub fn jpeg_frame_zero<'a>(
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

pub struct JpegFrameHeader {
    marker: u8,
    precision: u8,
    height: u16,
    width: u16,
    components: u8,
}

/// Finds the first start-of-frame segment, walking the marker segments from SOI.
pub fn jpeg_frame_header(data: &[u8]) -> Result<JpegFrameHeader, DecodeError> {
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
pub fn packbits_len(segment: &[u8]) -> Option<u64> {
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

pub fn rgb_to_gray(
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
