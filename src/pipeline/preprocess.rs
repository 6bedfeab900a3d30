//! The preprocessing contract shared with training: 8-bit grey → 224×224 → rows 60..164 →
//! 224×224 → histogram equalisation, reproducing opencv-python's arithmetic to the grey level.
//!
//! The model was trained on images prepared with `cv2.resize` and `cv2.equalizeHist`, so every
//! function here is a port of OpenCV's integer/float arithmetic (verified against
//! opencv-python 4.12 by `tests/preprocess_golden.rs`), not a generic image-processing routine:
//!
//! - `resize_linear` is OpenCV's 8-bit `INTER_LINEAR`: 11-bit fixed-point weights, a horizontal
//!   pass into `i32`, then the vertical pass as OpenCV's SIMD kernel computes it (each row
//!   pre-shifted by 4 and multiplied with a high-half 16-bit multiply). OpenCV's plain-C
//!   fallback rounds differently, but opencv-python on x86-64 was measured to give the SIMD
//!   result for every pixel at every width. (Its exact-2× reduction takes a box-filter path
//!   whose result is the same as this formula's.)
//! - `resize_area` is `INTER_AREA`: integer box averages for integer ratios, the f32
//!   area-weight tables otherwise, and OpenCV's bilinear emulation when enlarging.
//! - `equalize_hist` is `cv2.equalizeHist`, including its f32 scale and round-half-to-even.

use image::GrayImage;

/// Identifies this exact preprocessing in model metadata and reports.
pub const PREPROCESSING_ID: &str = "crop60-eqhist-v1";
/// Side of the square network input.
pub const INPUT_SIZE: u32 = 224;

/// The band of the 224×224 image that is kept (rows `CROP_TOP..CROP_BOTTOM`): the seed's
/// "crop 60 px top and bottom", which keeps the joint space.
pub const CROP_TOP: u32 = 60;
pub const CROP_BOTTOM: u32 = 164;

/// OpenCV's `INTER_RESIZE_COEF_BITS`: interpolation weights are integers out of 2048.
const COEF_SCALE: f32 = 2048.0;

/// The full contract: any 8-bit grey image → the 224×224 equalised network input.
pub fn preprocess(src: &GrayImage) -> GrayImage {
    from_input_frame(&resize_to_input(src))
}

/// The contract after its first step: the 224×224 frame (`resize_to_input`) → the equalised
/// network input. The frame is also what the result pictures are drawn on.
pub fn from_input_frame(square: &GrayImage) -> GrayImage {
    let band = image::imageops::crop_imm(square, 0, CROP_TOP, INPUT_SIZE, CROP_BOTTOM - CROP_TOP)
        .to_image();
    let stretched = resize_linear(&band, INPUT_SIZE, INPUT_SIZE);
    equalize_hist(&stretched)
}

/// The contract's first step: any grey image → 224×224 (`INTER_AREA` when both sides are at
/// least 224, else `INTER_LINEAR`; a 224×224 image is kept as it is).
pub fn resize_to_input(src: &GrayImage) -> GrayImage {
    let (w, h) = src.dimensions();
    if (w, h) == (INPUT_SIZE, INPUT_SIZE) {
        src.clone()
    } else if w >= INPUT_SIZE && h >= INPUT_SIZE {
        resize_area(src, INPUT_SIZE, INPUT_SIZE)
    } else {
        resize_linear(src, INPUT_SIZE, INPUT_SIZE)
    }
}

/// The network input tensor: NHWC f32, each grey value / 255 repeated in the 3 channels
/// (the backbone expects RGB). Length is `width × height × 3` (224·224·3 for `preprocess` output).
pub fn to_network_input(img: &GrayImage) -> Vec<f32> {
    img.as_raw()
        .iter()
        .flat_map(|&v| {
            let x = f32::from(v) / 255.0;
            [x, x, x]
        })
        .collect()
}

/// `cv2.equalizeHist`, to the grey level.
pub fn equalize_hist(src: &GrayImage) -> GrayImage {
    let mut hist = [0u64; 256];
    for &v in src.as_raw() {
        hist[usize::from(v)] += 1;
    }
    let total: u64 = hist.iter().sum();
    let Some(first) = hist.iter().position(|&n| n > 0) else {
        return src.clone(); // empty image
    };
    if hist[first] == total {
        return src.clone(); // one grey level: OpenCV leaves the image as it is
    }
    // OpenCV computes the scale and each product in f32, then rounds half to even.
    let scale = 255.0f32 / (total - hist[first]) as f32;
    let mut lut = [0u8; 256];
    let mut sum = 0u64;
    for j in first + 1..256 {
        sum += hist[j];
        lut[j] = saturate_u8((sum as f32 * scale).round_ties_even());
    }
    let mut out = src.clone();
    for v in out.iter_mut() {
        *v = lut[usize::from(*v)];
    }
    out
}

/// `cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)` on 8-bit grey: identical
/// output. A zero-sized source gives a black image; a zero target size gives an empty image.
pub fn resize_linear(src: &GrayImage, width: u32, height: u32) -> GrayImage {
    resize_two_tap(src, width, height, TapMode::Linear)
}

/// `cv2.resize(..., interpolation=cv2.INTER_AREA)` on 8-bit grey. Reducing: each output pixel
/// is the area-weighted mean of the source pixels under it. Enlarging (either axis): OpenCV's
/// bilinear emulation. Measured identical to opencv-python 4.12; the contract allows ±1.
pub fn resize_area(src: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (sw, sh) = src.dimensions();
    if sw == 0 || sh == 0 || width == 0 || height == 0 {
        return GrayImage::new(width, height);
    }
    if (sw, sh) == (width, height) {
        return src.clone();
    }
    // OpenCV derives the ratios this way (inverse of the inverse), so do the same.
    let scale_x = 1.0 / (f64::from(width) / f64::from(sw));
    let scale_y = 1.0 / (f64::from(height) / f64::from(sh));
    if scale_x < 1.0 || scale_y < 1.0 {
        return resize_two_tap(src, width, height, TapMode::AreaEnlarge);
    }
    let (ix, iy) = (scale_x.round(), scale_y.round());
    if (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON {
        return area_integer_ratio(src, width, height, ix as u32, iy as u32);
    }
    area_fractional(src, width, height, scale_x, scale_y)
}

#[derive(Clone, Copy, PartialEq)]
enum TapMode {
    Linear,
    AreaEnlarge,
}

/// One destination coordinate of a two-tap resize: source indices and 11-bit weights.
struct Tap {
    i0: usize,
    i1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's coordinate and weight computation for one axis (done in f32 as OpenCV does).
///
/// Horizontally (`clamp_weights`) a coordinate outside the source snaps to the edge pixel with
/// weight 1; vertically OpenCV only clamps the row indices and keeps the computed weights.
fn two_tap_axis(src_len: u32, dst_len: u32, mode: TapMode, clamp_weights: bool) -> Vec<Tap> {
    let inv_scale = f64::from(dst_len) / f64::from(src_len);
    let scale = 1.0 / inv_scale;
    let last = i64::from(src_len) - 1;
    (0..dst_len)
        .map(|d| {
            let d = f64::from(d);
            let (mut s, mut f) = match mode {
                TapMode::Linear => {
                    let f = ((d + 0.5) * scale - 0.5) as f32;
                    let s = f.floor();
                    (s as i64, f - s)
                }
                TapMode::AreaEnlarge => {
                    let s = (d * scale).floor();
                    let f = ((d + 1.0) - (s + 1.0) * inv_scale) as f32;
                    (s as i64, if f <= 0.0 { 0.0 } else { f - f.floor() })
                }
            };
            if clamp_weights && s < 0 {
                (s, f) = (0, 0.0);
            }
            if clamp_weights && s >= last {
                (s, f) = (last, 0.0);
            }
            Tap {
                i0: s.clamp(0, last) as usize,
                i1: (s + 1).clamp(0, last) as usize,
                w0: ((1.0 - f) * COEF_SCALE).round_ties_even() as i32,
                w1: (f * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

/// OpenCV's generic 8-bit two-tap resize (`resizeGeneric_` with `HResizeLinear` and the SIMD
/// `VResizeLinearVec_32s8u`).
fn resize_two_tap(src: &GrayImage, width: u32, height: u32, mode: TapMode) -> GrayImage {
    let (sw, sh) = src.dimensions();
    if sw == 0 || sh == 0 || width == 0 || height == 0 {
        return GrayImage::new(width, height);
    }
    if (sw, sh) == (width, height) {
        return src.clone(); // cv2.resize copies when the size does not change
    }
    let xs = two_tap_axis(sw, width, mode, true);
    let ys = two_tap_axis(sh, height, mode, false);
    let raw = src.as_raw();
    let row = |y: usize| &raw[y * sw as usize..(y + 1) * sw as usize];
    // Horizontal pass of one source row: exact integers, weights summing to 2048.
    let horizontal = |y: usize| -> Vec<i32> {
        let r = row(y);
        xs.iter()
            .map(|t| i32::from(r[t.i0]) * t.w0 + i32::from(r[t.i1]) * t.w1)
            .collect()
    };
    // Each source row under a destination row is passed once, however many it is under.
    let mut used = vec![false; sh as usize];
    for ty in &ys {
        (used[ty.i0], used[ty.i1]) = (true, true);
    }
    let across: Vec<Vec<i32>> = (used.iter().enumerate())
        .map(|(y, &used)| if used { horizontal(y) } else { Vec::new() })
        .collect();
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for ty in &ys {
        let (h0, h1) = (&across[ty.i0], &across[ty.i1]);
        out.extend(h0.iter().zip(h1).map(|(&a, &b)| {
            // The SIMD vertical step: drop 4 bits so values fit i16, keep the high 16 bits of
            // each product, add, then round away the last 2 bits. Not the same as rounding
            // (a*w0 + b*w1) >> 22, which the scalar fallback does.
            let mul_hi = |v: i32, w: i32| ((v >> 4) * w) >> 16;
            saturate_u8_i32((mul_hi(a, ty.w0) + mul_hi(b, ty.w1) + 2) >> 2)
        }));
    }
    GrayImage::from_raw(width, height, out).expect("buffer matches dimensions")
}

/// INTER_AREA for integer ratios (`resizeAreaFast_`): a box sum per output pixel.
fn area_integer_ratio(src: &GrayImage, width: u32, height: u32, kx: u32, ky: u32) -> GrayImage {
    let scale = 1.0f32 / (kx * ky) as f32;
    GrayImage::from_fn(width, height, |x, y| {
        let mut sum = 0u32;
        for sy in y * ky..(y + 1) * ky {
            for sx in x * kx..(x + 1) * kx {
                sum += u32::from(src.get_pixel(sx, sy).0[0]);
            }
        }
        // OpenCV's 2×2 kernel rounds half up; the general one multiplies in f32 and rounds
        // half to even.
        let v = if (kx, ky) == (2, 2) {
            (sum + 2) >> 2
        } else {
            (sum as f32 * scale).round_ties_even() as u32
        };
        image::Luma([v.min(255) as u8])
    })
}

/// OpenCV's area table for one axis, as one window per destination pixel: its first source
/// pixel, and `len` weights for the pixels from there, the cell's own weights followed by zeros.
/// Every window has the length of the longest cell, so the sums run the same loop for every
/// pixel; the zeros add exactly nothing.
struct AreaWindows {
    first: Vec<usize>,
    weights: Vec<f32>,
    len: usize,
}

/// OpenCV's `computeResizeAreaTab` for one axis (f64 geometry, f32 weights).
fn area_axis(src_len: u32, dst_len: u32, scale: f64) -> AreaWindows {
    let src_len_f = f64::from(src_len);
    let mut cells = Vec::with_capacity(dst_len as usize);
    for d in 0..dst_len {
        let fs1 = f64::from(d) * scale;
        let fs2 = fs1 + scale;
        let cell = scale.min(src_len_f - fs1);
        let s2 = (fs2.floor() as i64).min(i64::from(src_len) - 1);
        let s1 = (fs1.ceil() as i64).min(s2);
        let mut first = s1;
        let mut weights = Vec::new();
        if s1 as f64 - fs1 > 1e-3 {
            first = s1 - 1;
            weights.push(((s1 as f64 - fs1) / cell) as f32);
        }
        weights.extend((s1..s2).map(|_| (1.0 / cell) as f32));
        if fs2 - s2 as f64 > 1e-3 {
            weights.push(((fs2 - s2 as f64).min(1.0).min(cell) / cell) as f32);
        }
        cells.push((first as usize, weights));
    }
    let len = cells.iter().map(|(_, w)| w.len()).max().unwrap_or(0).max(1);
    AreaWindows {
        first: cells.iter().map(|(first, _)| *first).collect(),
        weights: (cells.iter())
            .flat_map(|(_, w)| w.iter().copied().chain(std::iter::repeat(0.0)).take(len))
            .collect(),
        len,
    }
}

/// INTER_AREA for fractional ratios (`resizeArea_`): f32 accumulation in OpenCV's order. Each
/// source row is summed across once (a row under two destination rows is reused), then added
/// into the destination rows under it with their weights.
fn area_fractional(src: &GrayImage, width: u32, height: u32, sx: f64, sy: f64) -> GrayImage {
    let xs = area_axis(src.width(), width, sx);
    let ys = area_axis(src.height(), height, sy);
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let raw = src.as_raw();
    let mut sums = vec![0f32; width as usize * height as usize];
    // One source row as f32, with room for the last window's zero-weighted tail.
    let mut row = vec![0f32; sw + xs.len];
    let mut across = vec![0f32; width as usize];
    let mut summed_row = None;
    for ((acc, &first), wys) in (sums.chunks_exact_mut(width as usize))
        .zip(&ys.first)
        .zip(ys.weights.chunks_exact(ys.len))
    {
        for (y, &wy) in (first..sh).zip(wys) {
            if wy == 0.0 {
                break; // the window's padding
            }
            if summed_row != Some(y) {
                for (r, &v) in row.iter_mut().zip(&raw[y * sw..(y + 1) * sw]) {
                    *r = f32::from(v);
                }
                sum_across(&row, &xs, &mut across);
                summed_row = Some(y);
            }
            for (a, &b) in acc.iter_mut().zip(&across) {
                *a += wy * b;
            }
        }
    }
    let out = sums
        .into_iter()
        .map(|v| saturate_u8(v.round_ties_even()))
        .collect();
    GrayImage::from_raw(width, height, out).expect("buffer matches dimensions")
}

/// Each window's weighted sum of `row`, in order from its first pixel. The common window
/// lengths are passed as constants, so that the inlined loop has a known length and unrolls.
fn sum_across(row: &[f32], xs: &AreaWindows, across: &mut [f32]) {
    #[inline(always)]
    fn windows(row: &[f32], xs: &AreaWindows, across: &mut [f32], n: usize) {
        for ((a, &x), wxs) in across
            .iter_mut()
            .zip(&xs.first)
            .zip(xs.weights.chunks_exact(n))
        {
            *a = (row[x..x + n].iter().zip(wxs)).fold(0.0, |s, (&v, &w)| s + v * w);
        }
    }
    match xs.len {
        2 => windows(row, xs, across, 2),
        3 => windows(row, xs, across, 3),
        4 => windows(row, xs, across, 4),
        5 => windows(row, xs, across, 5),
        6 => windows(row, xs, across, 6),
        7 => windows(row, xs, across, 7),
        8 => windows(row, xs, across, 8),
        n => windows(row, xs, across, n),
    }
}

fn saturate_u8(v: f32) -> u8 {
    v.clamp(0.0, 255.0) as u8
}

fn saturate_u8_i32(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}
