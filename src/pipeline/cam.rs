//! Grad-CAM for the grading head: channel weights from the head's exact gradient, the activation
//! map, its upsampling, jet overlay and region of interest. Types validate shape when built.

use image::{GrayImage, Rgb, RgbImage};

use crate::pipeline::head::Head;
pub use crate::pipeline::shape::CamError;
use crate::pipeline::shape::{check_len, product};
use crate::record::Roi;

/// Default ROI threshold on the normalised heatmap.
pub const ROI_THRESHOLD: f32 = 0.5;

/// Colour of the ROI outline: magenta does not occur in the jet colormap nor in a gray X-ray.
pub const OUTLINE_COLOUR: Rgb<u8> = Rgb([255, 0, 255]);

/// Last convolutional feature map, NHWC row-major: value `(i, j, k)` is at `(i*width + j)*channels + k`.
#[derive(Debug, Clone, Copy)]
pub struct FeatureMap<'a> {
    data: &'a [f32],
    height: usize,
    width: usize,
    channels: usize,
}

impl<'a> FeatureMap<'a> {
    pub fn new(
        data: &'a [f32],
        height: usize,
        width: usize,
        channels: usize,
    ) -> Result<Self, CamError> {
        if height == 0 || width == 0 || channels == 0 {
            return Err(CamError::Empty("feature map"));
        }
        check_len("feature map", data, product(&[height, width, channels]))?;
        Ok(FeatureMap {
            data,
            height,
            width,
            channels,
        })
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The channel vectors of each spatial position, in row-major order.
    fn positions(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.channels)
    }
}

/// Per-channel mean over all spatial positions (what the model's pooling layer computes).
pub fn global_average_pool(f: &FeatureMap) -> Vec<f32> {
    let mut acc = vec![0.0f64; f.channels];
    for position in f.positions() {
        for (a, &v) in acc.iter_mut().zip(position) {
            *a += f64::from(v);
        }
    }
    let count = (f.height * f.width) as f64;
    acc.into_iter().map(|a| (a / count) as f32).collect()
}

/// Grad-CAM channel weights `α_k = mean_ij ∂z_class/∂A_ijk = (∂z_class/∂g_k) / (H·W)`.
pub fn channel_weights(f: &FeatureMap, head: &Head, class: usize) -> Result<Vec<f32>, CamError> {
    let scale = 1.0 / (f.height * f.width) as f32;
    let gradient = head.gradient(&global_average_pool(f), class)?;
    Ok(gradient.into_iter().map(|d| d * scale).collect())
}

/// A row-major grid of heat values: the raw class-activation map, or its normalised upsampling.
#[derive(Debug, Clone, PartialEq)]
pub struct CamGrid {
    width: usize,
    height: usize,
    values: Vec<f32>,
}

impl CamGrid {
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Result<Self, CamError> {
        let expected = product(&[width, height]);
        if values.len() != expected {
            return Err(CamError::Length {
                what: "heatmap",
                got: values.len(),
                expected,
            });
        }
        Ok(CamGrid {
            width,
            height,
            values,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    fn check_matches(&self, width: u32, height: u32) -> Result<(), CamError> {
        if self.width as u64 != u64::from(width) || self.height as u64 != u64::from(height) {
            return Err(CamError::Size {
                heat_width: self.width,
                heat_height: self.height,
                image_width: width,
                image_height: height,
            });
        }
        Ok(())
    }
}

/// `Σ_k α_k A_k` at every position of the feature map's grid, row-major, before the ReLU.
fn weighted_map(f: &FeatureMap, head: &Head, class: usize) -> Result<Vec<f64>, CamError> {
    let alpha = channel_weights(f, head, class)?;
    Ok(f.positions()
        .map(|position| {
            position
                .iter()
                .zip(&alpha)
                .map(|(&a, &w)| f64::from(a) * f64::from(w))
                .sum()
        })
        .collect())
}

/// `ReLU(Σ_k α_k A_k)` on the feature map's grid, before any normalisation.
pub fn grad_cam(f: &FeatureMap, head: &Head, class: usize) -> Result<CamGrid, CamError> {
    let values = weighted_map(f, head, class)?
        .into_iter()
        .map(|s| s.max(0.0) as f32)
        .collect();
    Ok(CamGrid {
        width: f.width,
        height: f.height,
        values,
    })
}

/// Grad-CAM of the mean logit of an image (`f`) and its left-right mirror (`mirrored`): the mean
/// halves each view's gradient, so the map is `ReLU(½ M(f) + ½ M'(mirrored))` where `M'` is the
/// mirror's weighted map flipped back onto the image's columns. Both maps must have one shape.
pub fn grad_cam_with_mirror(
    f: &FeatureMap,
    mirrored: &FeatureMap,
    head: &Head,
    class: usize,
) -> Result<CamGrid, CamError> {
    let shape = |m: &FeatureMap| (m.height, m.width, m.channels);
    if shape(f) != shape(mirrored) {
        return Err(CamError::Length {
            what: "mirrored feature map",
            got: product(&[mirrored.height, mirrored.width, mirrored.channels]),
            expected: product(&[f.height, f.width, f.channels]),
        });
    }
    let a = weighted_map(f, head, class)?;
    let b = weighted_map(mirrored, head, class)?;
    let w = f.width;
    let values = (0..a.len())
        .map(|i| {
            let (row, col) = (i / w, i % w);
            let s = 0.5 * (a[i] + b[row * w + (w - 1 - col)]);
            s.max(0.0) as f32
        })
        .collect();
    Ok(CamGrid {
        width: f.width,
        height: f.height,
        values,
    })
}

/// Numerically stable softmax (max subtracted first).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// For each output index along one axis: the two source indices and the weight of the second.
/// Half-pixel centres with clamp to edge, as OpenCV's `INTER_LINEAR` does.
fn bilinear_taps(source: usize, target: usize) -> Vec<(usize, usize, f32)> {
    let scale = source as f32 / target as f32;
    let last = source - 1;
    (0..target)
        .map(|t| {
            let x = ((t as f32 + 0.5) * scale - 0.5).max(0.0);
            let i = (x.floor() as usize).min(last);
            (i, (i + 1).min(last), x - i as f32)
        })
        .collect()
}

/// Bilinear resize of a heat grid to `width`×`height`, then divided by the grid's maximum so
/// the result lies in 0..1. A grid without any positive value gives all zeros.
pub fn upsample(grid: &CamGrid, width: u32, height: u32) -> CamGrid {
    let (width, height) = (width as usize, height as usize);
    let max = grid.values.iter().copied().fold(0.0f32, f32::max);
    if grid.values.is_empty() || !(max > 0.0 && max.is_finite()) {
        return CamGrid {
            width,
            height,
            values: vec![0.0; width * height],
        };
    }
    let xs = bilinear_taps(grid.width, width);
    let ys = bilinear_taps(grid.height, height);
    let at = |x: usize, y: usize| grid.values[y * grid.width + x];
    let mut values = Vec::with_capacity(width * height);
    for &(y0, y1, ty) in &ys {
        for &(x0, x1, tx) in &xs {
            let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
            let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
            let v = (top * (1.0 - ty) + bottom * ty) / max;
            values.push(v.clamp(0.0, 1.0));
        }
    }
    CamGrid {
        width,
        height,
        values,
    }
}

/// Round a value in 0..=255 to the nearest byte (halves up).
fn to_byte(x: f32) -> u8 {
    (x + 0.5) as u8
}

/// The classic "jet" colormap (dark blue → cyan → yellow → dark red), in its piecewise-linear
/// form: channel = clamp(1.5 − |4v − c|, 0, 1) with c = 3, 2, 1 for red, green, blue.
/// Inputs are clamped to 0..1; NaN maps to 0.
pub fn colormap(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let channel = |centre: f32| to_byte((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0);
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// Blend the colour-mapped heat over the gray X-ray: `(1 − alpha)·gray + alpha·colour`.
/// The heatmap must have the X-ray's size; `alpha` is clamped to 0..1.
pub fn overlay(xray: &GrayImage, heat: &CamGrid, alpha: f32) -> Result<RgbImage, CamError> {
    heat.check_matches(xray.width(), xray.height())?;
    let alpha = if alpha.is_nan() {
        0.0
    } else {
        alpha.clamp(0.0, 1.0)
    };
    let keep = 1.0 - alpha;
    let mut out = RgbImage::new(xray.width(), xray.height());
    for ((pixel, gray), &v) in out.pixels_mut().zip(xray.pixels()).zip(&heat.values) {
        let gray = f32::from(gray.0[0]);
        let colour = colormap(v);
        for (o, c) in pixel.0.iter_mut().zip(colour) {
            *o = to_byte(keep * gray + alpha * f32::from(c));
        }
    }
    Ok(out)
}

/// Bounding box of the largest 8-connected region whose heat is ≥ `threshold`
/// (the first one in raster order on a tie); `None` when no pixel reaches the threshold.
pub fn roi(heat: &CamGrid, threshold: f32) -> Option<Roi> {
    let (w, h) = (heat.width, heat.height);
    let inside: Vec<bool> = heat.values.iter().map(|&v| v >= threshold).collect();
    let mut seen = vec![false; inside.len()];
    let mut best: Option<(usize, [usize; 4])> = None;
    let mut stack = Vec::new();
    for start in 0..inside.len() {
        if !inside[start] || seen[start] {
            continue;
        }
        // Flood fill with an explicit stack: a large region would overflow a recursive one.
        seen[start] = true;
        stack.push(start);
        let (mut count, mut bounds) = (0, [usize::MAX, usize::MAX, 0, 0]);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            count += 1;
            bounds = [
                bounds[0].min(x),
                bounds[1].min(y),
                bounds[2].max(x),
                bounds[3].max(y),
            ];
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let q = ny * w + nx;
                    if inside[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        if best.is_none_or(|(c, _)| count > c) {
            best = Some((count, bounds));
        }
    }
    best.map(|(count, [x0, y0, x1, y1])| Roi {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0 + 1) as u32,
        height: (y1 - y0 + 1) as u32,
        area_fraction: count as f32 / inside.len() as f32,
    })
}

/// Paint, in [`OUTLINE_COLOUR`], the contour of every region whose heat is ≥ `threshold`:
/// the region's pixels that touch (4-neighbourhood) a pixel outside it or the image edge.
/// The heatmap must have the image's size.
pub fn draw_roi_outline(
    img: &mut RgbImage,
    heat: &CamGrid,
    threshold: f32,
) -> Result<(), CamError> {
    heat.check_matches(img.width(), img.height())?;
    let (w, h) = (heat.width, heat.height);
    let inside = |x: usize, y: usize| heat.values[y * w + x] >= threshold;
    for y in 0..h {
        for x in 0..w {
            let on_contour = inside(x, y)
                && (x == 0
                    || y == 0
                    || x == w - 1
                    || y == h - 1
                    || !inside(x - 1, y)
                    || !inside(x + 1, y)
                    || !inside(x, y - 1)
                    || !inside(x, y + 1));
            if on_contour {
                img.put_pixel(x as u32, y as u32, OUTLINE_COLOUR);
            }
        }
    }
    Ok(())
}
