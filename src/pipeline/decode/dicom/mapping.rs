//! Stored values → 8-bit grey: modality transform, VOI (window, VOI LUT, full range) and
//! MONOCHROME1 inversion, as one lookup table (see the `dicom` module documentation).

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::attributes::*;
use super::pixel_module::*;
use super::structure::*;
use crate::pipeline::decode::limits::DecodeError;

/// A lookup table from the file (Modality LUT or VOI LUT Sequence item).
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    first: i32,
    entries: Vec<u16>,
    bits: u16,
}

impl Lut {
    pub fn read(item: &InMemDicomObject, signed_input: bool) -> Option<Lut> {
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

    pub fn max_out(&self) -> f64 {
        f64::from((1u32 << self.bits) - 1)
    }

    /// The entry for `x`, clamped to the table (never empty: `read` takes 1 to 65536 entries).
    pub fn get(&self, x: f64) -> f64 {
        let last = self.entries.len() as f64 - 1.0;
        let i = (x.round() - f64::from(self.first)).clamp(0.0, last) as usize;
        f64::from(self.entries[i])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Modality {
    Rescale { slope: f64, intercept: f64 },
    Lut(Lut),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
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
pub struct PixelMapping {
    pub min_stored: i32,
    pub max_stored: i32,
    pub modality: Modality,
    pub voi: Voi,
    pub invert: bool,
}

impl PixelMapping {
    pub fn from_object(
        obj: &InMemDicomObject,
        px: &PixelModule,
        warnings: &mut Vec<String>,
    ) -> Self {
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

    pub fn modality(&self, stored: i32) -> f64 {
        match &self.modality {
            Modality::Rescale { slope, intercept } => f64::from(stored) * slope + intercept,
            Modality::Lut(lut) => lut.get(f64::from(stored)),
        }
    }

    /// Modality output → 0..255 (real).
    pub fn voi(&self, x: f64) -> f64 {
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
    pub fn table(&self) -> Vec<u8> {
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
    pub fn apply(&self, data: &[u8], px: &PixelModule) -> Result<Vec<u8>, DecodeError> {
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
