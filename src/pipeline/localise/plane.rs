//! A grey image as `f32` values, with the resampling the localiser needs: integer box
//! downscaling, contrast stretching and bilinear sampling with replicated borders.

use image::GrayImage;

#[derive(Clone)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

impl Plane {
    /// `gray` averaged over `factor × factor` boxes (partial boxes at the right and bottom
    /// edges average what they hold).
    pub fn box_downscale(gray: &GrayImage, factor: usize) -> Plane {
        let (w, h) = (gray.width() as usize, gray.height() as usize);
        let (width, height) = (w.div_ceil(factor), h.div_ceil(factor));
        let mut sums = vec![0u32; width * height];
        for (y, row) in gray.as_raw().chunks_exact(w).enumerate() {
            let out = &mut sums[(y / factor) * width..][..width];
            for (o, chunk) in out.iter_mut().zip(row.chunks(factor)) {
                *o += chunk.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
        }
        let span = |i: usize, len: usize| (len - i * factor).min(factor) as f32;
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let rows = span(y, h);
            for x in 0..width {
                pixels.push(sums[y * width + x] as f32 / (rows * span(x, w)));
            }
        }
        Plane {
            width,
            height,
            pixels,
        }
    }

    /// The values at the `low` and `high` quantiles (0..1).
    pub fn quantiles(&self, low: f32, high: f32) -> (f32, f32) {
        let mut hist = [0usize; 256];
        for &v in &self.pixels {
            hist[v.clamp(0.0, 255.0) as usize] += 1;
        }
        let n = self.pixels.len() as f32;
        let find = |q: f32| {
            let target = (q * n) as usize;
            let mut seen = 0;
            for (value, &count) in hist.iter().enumerate() {
                seen += count;
                if seen > target {
                    return value as f32;
                }
            }
            255.0
        };
        (find(low), find(high))
    }

    /// Linear stretch of `lo..hi` to `0..255`, clipping outside.
    pub fn stretch(&mut self, lo: f32, hi: f32) {
        let scale = 255.0 / (hi - lo).max(1.0);
        for v in &mut self.pixels {
            *v = ((*v - lo) * scale).clamp(0.0, 255.0);
        }
    }

    /// The plane with `mx` black columns added left and right and `my` black rows above and
    /// below.
    pub fn padded(&self, mx: usize, my: usize) -> Plane {
        let width = self.width + 2 * mx;
        let height = self.height + 2 * my;
        let mut pixels = vec![0.0; width * height];
        for (y, row) in self.pixels.chunks_exact(self.width).enumerate() {
            pixels[(y + my) * width + mx..][..self.width].copy_from_slice(row);
        }
        Plane {
            width,
            height,
            pixels,
        }
    }

    /// Bilinear sample at continuous coordinates (pixel `i` covers `i..i+1`), borders replicated.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let fx = (x - 0.5).clamp(0.0, (self.width - 1) as f32);
        let fy = (y - 0.5).clamp(0.0, (self.height - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let p = |x: usize, y: usize| self.pixels[y * self.width + x];
        let top = p(x0, y0) * (1.0 - ax) + p(x1, y0) * ax;
        let bottom = p(x0, y1) * (1.0 - ax) + p(x1, y1) * ax;
        top * (1.0 - ay) + bottom * ay
    }

    /// The whole plane resampled to `width × height`.
    pub fn resized(&self, width: usize, height: usize) -> Plane {
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let src_y = (y as f32 + 0.5) * sy;
            for x in 0..width {
                pixels.push(self.sample((x as f32 + 0.5) * sx, src_y));
            }
        }
        Plane {
            width,
            height,
            pixels,
        }
    }

    /// The square of side `side` centred on `(cx, cy)` resampled to `out × out` 8-bit pixels,
    /// mirrored left to right when `mirrored`.
    pub fn window(&self, cx: f32, cy: f32, side: f32, out: u32, mirrored: bool) -> GrayImage {
        let step = side / out as f32;
        let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
        GrayImage::from_fn(out, out, |u, v| {
            let u = if mirrored { out - 1 - u } else { u };
            let value = self.sample(x0 + (u as f32 + 0.5) * step, y0 + (v as f32 + 0.5) * step);
            image::Luma([value.round().clamp(0.0, 255.0) as u8])
        })
    }
}

/// Summed-area table of a plane, for box means in constant time.
pub struct BoxMeans {
    width: usize,
    height: usize,
    sums: Vec<f64>,
}

impl BoxMeans {
    pub fn new(plane: &Plane) -> Self {
        let (width, height) = (plane.width, plane.height);
        let mut sums = vec![0.0f64; (width + 1) * (height + 1)];
        for y in 0..height {
            let mut row = 0.0f64;
            for x in 0..width {
                row += f64::from(plane.pixels[y * width + x]);
                sums[(y + 1) * (width + 1) + x + 1] = sums[y * (width + 1) + x + 1] + row;
            }
        }
        BoxMeans {
            width,
            height,
            sums,
        }
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Mean over `x0..x1 × y0..y1` (continuous coordinates, clipped to the plane; 0 when
    /// nothing is left).
    pub fn mean(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> f32 {
        let clip = |v: f32, len: usize| (v.round().max(0.0) as usize).min(len);
        let (x0, x1) = (clip(x0, self.width), clip(x1, self.width));
        let (y0, y1) = (clip(y0, self.height), clip(y1, self.height));
        if x1 <= x0 || y1 <= y0 {
            return 0.0;
        }
        let at = |x: usize, y: usize| self.sums[y * (self.width + 1) + x];
        let total = at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0);
        (total / ((x1 - x0) * (y1 - y0)) as f64) as f32
    }
}
