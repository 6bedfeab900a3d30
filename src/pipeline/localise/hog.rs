//! Histogram of oriented gradients, computed exactly as OpenCV's
//! `HOGDescriptor((64,64), (16,16), (8,8), (8,8), 9).compute` does: centred [-1, 0, 1]
//! derivatives with reflected borders, no gamma correction, 9 unsigned orientation bins with
//! linear interpolation between bins and between cells, a Gaussian block weight (sigma 4) and
//! L2-Hys block normalisation (clip at 0.2). Blocks and the cells inside a block are stored
//! column by column, as OpenCV stores them.

use image::GrayImage;

/// Side of the detection window in pixels.
pub const WINDOW: usize = 64;
/// Side of a block in pixels.
const BLOCK: usize = 16;
/// Distance between neighbouring blocks (and side of a cell) in pixels.
pub const STRIDE: usize = 8;
/// Orientation bins over 0..180 degrees.
pub const BINS: usize = 9;
/// Values in one normalised block: 2×2 cells × 9 bins.
pub const BLOCK_LEN: usize = 4 * BINS;
/// Blocks along one side of the window.
pub const BLOCKS_PER_SIDE: usize = (WINDOW - BLOCK) / STRIDE + 1;
/// Length of a window descriptor.
pub const DESCRIPTOR_LEN: usize = BLOCKS_PER_SIDE * BLOCKS_PER_SIDE * BLOCK_LEN;

const WIN_SIGMA: f32 = 4.0;
const L2HYS_THRESHOLD: f32 = 0.2;

/// Per-pixel gradient of an image, split between its two nearest orientation bins.
pub struct Gradients {
    width: usize,
    /// Magnitude share of the lower and the upper bin.
    weights: Vec<[f32; 2]>,
    /// Lower and upper bin index.
    bins: Vec<[u8; 2]>,
}

impl Gradients {
    /// Gradients of a grey image given row by row as `width × height` values.
    pub fn new(pixels: &[f32], width: usize, height: usize) -> Self {
        assert_eq!(pixels.len(), width * height);
        let angle_scale = BINS as f32 / std::f32::consts::PI;
        let mut weights = Vec::with_capacity(width * height);
        let mut bins = Vec::with_capacity(width * height);
        for y in 0..height {
            let up = &pixels[reflect101(y as isize - 1, height) * width..][..width];
            let down = &pixels[reflect101(y as isize + 1, height) * width..][..width];
            let row = &pixels[y * width..][..width];
            for x in 0..width {
                let left = if x == 0 {
                    row[1.min(width - 1)]
                } else {
                    row[x - 1]
                };
                let right = if x + 1 == width {
                    row[width.saturating_sub(2)]
                } else {
                    row[x + 1]
                };
                let (dx, dy) = (right - left, down[x] - up[x]);
                let mag = (dx * dx + dy * dy).sqrt();
                // The angle is at least -0.5 bins, so truncation after +1 is a floor.
                let mut angle = fast_atan2_radians(dy, dx) * angle_scale - 0.5;
                let low = (angle + 1.0) as i32 - 1;
                angle -= low as f32;
                let low = if low < 0 {
                    low + BINS as i32
                } else if low >= BINS as i32 {
                    low - BINS as i32
                } else {
                    low
                } as usize;
                weights.push([mag * (1.0 - angle), mag * angle]);
                bins.push([low as u8, if low + 1 == BINS { 0 } else { low as u8 + 1 }]);
            }
        }
        Gradients {
            width,
            weights,
            bins,
        }
    }

    /// Gradients of an 8-bit grey image.
    pub fn of_image(gray: &GrayImage) -> Self {
        let pixels: Vec<f32> = gray.as_raw().iter().map(|&v| f32::from(v)).collect();
        Self::new(&pixels, gray.width() as usize, gray.height() as usize)
    }

    /// The L2-Hys normalised histogram of the 16×16 block whose top-left pixel is `(x0, y0)`.
    pub fn block(&self, x0: usize, y0: usize, table: &BlockWeights) -> [f32; BLOCK_LEN] {
        let mut hist = [0.0f32; BLOCK_LEN];
        for i in 0..BLOCK {
            let row = (y0 + i) * self.width + x0;
            for j in 0..BLOCK {
                let [w0, w1] = self.weights[row + j];
                let [b0, b1] = self.bins[row + j];
                for (cell, &cw) in table.cell_weights[i * BLOCK + j].iter().enumerate() {
                    if cw != 0.0 {
                        hist[cell * BINS + b0 as usize] += w0 * cw;
                        hist[cell * BINS + b1 as usize] += w1 * cw;
                    }
                }
            }
        }
        normalise_l2hys(&mut hist);
        hist
    }
}

/// Per-pixel weights of a block pixel for each of the block's four cells (Gaussian window
/// times bilinear cell interpolation), in OpenCV's cell order.
pub struct BlockWeights {
    cell_weights: Vec<[f32; 4]>,
}

impl Default for BlockWeights {
    fn default() -> Self {
        let scale = 1.0 / (WIN_SIGMA * WIN_SIGMA * 2.0);
        let half = BLOCK as f32 * 0.5;
        let cell_share = |p: usize| -> [f32; 2] {
            let c = (p as f32 + 0.5) / STRIDE as f32 - 0.5;
            let first = c.floor();
            let frac = c - first;
            match first as i32 {
                -1 => [frac, 0.0],
                0 => [1.0 - frac, frac],
                _ => [0.0, 1.0 - frac],
            }
        };
        let mut cell_weights = Vec::with_capacity(BLOCK * BLOCK);
        for i in 0..BLOCK {
            let di = i as f32 - half;
            let [y0, y1] = cell_share(i);
            for j in 0..BLOCK {
                let dj = j as f32 - half;
                let gauss = (-(di * di + dj * dj) * scale).exp();
                let [x0, x1] = cell_share(j);
                cell_weights.push([
                    gauss * x0 * y0,
                    gauss * x0 * y1,
                    gauss * x1 * y0,
                    gauss * x1 * y1,
                ]);
            }
        }
        BlockWeights { cell_weights }
    }
}

/// HOG descriptor of a 64×64 window, equal to OpenCV's `HOGDescriptor.compute` on that window.
pub fn hog_descriptor(window: &GrayImage) -> Vec<f32> {
    assert_eq!(
        window.dimensions(),
        (WINDOW as u32, WINDOW as u32),
        "the HOG window is 64×64"
    );
    let gradients = Gradients::of_image(window);
    let table = BlockWeights::default();
    let mut descriptor = Vec::with_capacity(DESCRIPTOR_LEN);
    for bx in 0..BLOCKS_PER_SIDE {
        for by in 0..BLOCKS_PER_SIDE {
            descriptor.extend_from_slice(&gradients.block(bx * STRIDE, by * STRIDE, &table));
        }
    }
    descriptor
}

fn normalise_l2hys(hist: &mut [f32; BLOCK_LEN]) {
    let sum: f32 = hist.iter().map(|v| v * v).sum();
    let scale = 1.0 / (sum.sqrt() + BLOCK_LEN as f32 * 0.1);
    let mut sum = 0.0f32;
    for v in hist.iter_mut() {
        *v = (*v * scale).min(L2HYS_THRESHOLD);
        sum += *v * *v;
    }
    let scale = 1.0 / (sum.sqrt() + 1e-3);
    for v in hist.iter_mut() {
        *v *= scale;
    }
}

/// OpenCV's `BORDER_REFLECT_101`: `-1 → 1`, `len → len - 2`.
fn reflect101(i: isize, len: usize) -> usize {
    let len = len as isize;
    if len == 1 {
        return 0;
    }
    let mut i = i;
    while i < 0 || i >= len {
        i = if i < 0 { -i } else { 2 * len - 2 - i };
    }
    i as usize
}

/// OpenCV's polynomial `atan2` (used by `cartToPolar`), in radians over `0..2π`.
#[allow(clippy::excessive_precision)]
fn fast_atan2_radians(y: f32, x: f32) -> f32 {
    const DEG: f32 = (180.0 / std::f64::consts::PI) as f32;
    const P1: f32 = 0.9997878412794807 * DEG;
    const P3: f32 = -0.3258083974640975 * DEG;
    const P5: f32 = 0.1555786518463281 * DEG;
    const P7: f32 = -0.04432655554792128 * DEG;
    let (ax, ay) = (x.abs(), y.abs());
    let poly = |c: f32| {
        let c2 = c * c;
        (((P7 * c2 + P5) * c2 + P3) * c2 + P1) * c
    };
    let mut a = if ax >= ay {
        poly(ay / (ax + f64::EPSILON as f32))
    } else {
        90.0 - poly(ax / (ay + f64::EPSILON as f32))
    };
    if x < 0.0 {
        a = 180.0 - a;
    }
    if y < 0.0 {
        a = 360.0 - a;
    }
    a * (std::f64::consts::PI / 180.0) as f32
}
