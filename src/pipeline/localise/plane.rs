//! A grey image as `f32` values, with the resampling the localiser needs: integer box
//! downscaling, contrast stretching, and resampling with replicated borders: bilinear when
//! enlarging, area-averaging when shrinking.

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

    /// The whole plane resampled to `width × height`.
    pub fn resized(&self, width: usize, height: usize) -> Plane {
        let pixels = self.resample(
            &Taps::new(0.0, self.width as f32 / width as f32, width, self.width),
            &Taps::new(0.0, self.height as f32 / height as f32, height, self.height),
        );
        Plane {
            width,
            height,
            pixels,
        }
    }

    /// The square of side `side` centred on `(cx, cy)` resampled to `out × out` 8-bit pixels,
    /// mirrored left to right when `mirrored`.
    pub fn window(&self, cx: f32, cy: f32, side: f32, out: u32, mirrored: bool) -> GrayImage {
        let n = out as usize;
        let step = side / out as f32;
        let mut columns = Taps::new(cx - side / 2.0, step, n, self.width);
        if mirrored {
            columns.0.reverse();
        }
        let rows = Taps::new(cy - side / 2.0, step, n, self.height);
        let values = self.resample(&columns, &rows);
        GrayImage::from_fn(out, out, |u, v| {
            let value = values[v as usize * n + u as usize];
            image::Luma([value.round().clamp(0.0, 255.0) as u8])
        })
    }

    /// Each output pixel from the source pixels its column and row taps name: each source row
    /// the row taps use is passed across the columns once, then the rows are combined.
    fn resample(&self, columns: &Taps, rows: &Taps) -> Vec<f32> {
        let n = columns.0.len();
        let used = rows.0.iter().flatten().map(|&(y, _)| y);
        let (first, last) = (used.clone().min().unwrap_or(0), used.max().unwrap_or(0));
        let mut across = Vec::with_capacity((last - first + 1) * n);
        let used_rows = &self.pixels[first * self.width..(last + 1) * self.width];
        for source in used_rows.chunks_exact(self.width) {
            across.extend(
                (columns.0.iter())
                    .map(|taps| taps.iter().map(|&(x, wx)| source[x] * wx).sum::<f32>()),
            );
        }
        let mut out = vec![0.0f32; n * rows.0.len()];
        for (row_taps, out_row) in rows.0.iter().zip(out.chunks_exact_mut(n)) {
            for &(y, wy) in row_taps {
                for (o, a) in out_row.iter_mut().zip(&across[(y - first) * n..][..n]) {
                    *o += a * wy;
                }
            }
        }
        out
    }
}

/// Along one axis, the source pixels (index, weight) that make each of `count` output pixels
/// spaced `step` apart from `start` (pixel `i` covers `i..i+1`; indices past the ends repeat
/// the edge pixel). Enlarging (`step <= 1`) interpolates linearly between the two nearest
/// centres. Shrinking averages the pixels each output pixel covers, weighted by the fraction
/// covered (OpenCV's `INTER_AREA`), so that noise does not alias into the smaller image.
struct Taps(Vec<Vec<(usize, f32)>>);

impl Taps {
    fn new(start: f32, step: f32, count: usize, len: usize) -> Taps {
        let last = len - 1;
        let taps = (0..count).map(|i| {
            if step <= 1.0 {
                let f = (start + (i as f32 + 0.5) * step - 0.5).clamp(0.0, last as f32);
                let i0 = f as usize;
                let a = f - i0 as f32;
                vec![(i0, 1.0 - a), ((i0 + 1).min(last), a)]
            } else {
                let (lo, hi) = (start + i as f32 * step, start + (i + 1) as f32 * step);
                let mut taps = Vec::new();
                let mut x = lo.floor();
                while x < hi {
                    let covered = (x + 1.0).min(hi) - x.max(lo);
                    taps.push(((x.max(0.0) as usize).min(last), covered / step));
                    x += 1.0;
                }
                taps
            }
        });
        Taps(taps.collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from OpenCV: `cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)` on
    /// this 9×7 `float32` plane.
    #[test]
    fn shrinking_averages_like_opencv_inter_area() {
        let source = Plane {
            width: 9,
            height: 7,
            pixels: (0..63)
                .map(|i| (((i % 9) * 37 + (i / 9) * 11) % 50 * 5) as f32)
                .collect(),
        };
        let golden: [(usize, usize, &[f32]); 2] = [
            (
                4,
                3,
                &[
                    118.9683, 125.3175, 159.4445, 110.2381, 129.6032, 135.9524, 106.5873, 136.746,
                    104.5238, 110.873, 113.254, 79.9206,
                ],
            ),
            (
                3,
                3,
                &[
                    129.0476, 136.4286, 120.0, 123.8095, 131.1905, 126.6667, 118.5714, 90.2381,
                    97.619,
                ],
            ),
        ];
        for (w, h, want) in golden {
            let got = source.resized(w, h);
            for (g, e) in got.pixels.iter().zip(want) {
                assert!((g - e).abs() < 1e-3, "{w}×{h}: {:?}", got.pixels);
            }
        }
    }

    #[test]
    fn enlarging_interpolates_between_centres_and_repeats_edges() {
        let source = Plane {
            width: 2,
            height: 1,
            pixels: vec![10.0, 50.0],
        };
        // Output centres at 0.25, 0.75, 1.25, 1.75: the first and last lie beyond the centres.
        assert_eq!(source.resized(4, 1).pixels, vec![10.0, 20.0, 40.0, 50.0]);
    }

    #[test]
    fn a_mirrored_window_is_the_window_flipped() {
        let source = Plane {
            width: 40,
            height: 30,
            pixels: (0..1200).map(|i| ((i * 7919) % 251) as f32).collect(),
        };
        let plain = source.window(18.0, 14.0, 25.0, 8, false);
        let mirrored = source.window(18.0, 14.0, 25.0, 8, true);
        assert_eq!(image::imageops::flip_horizontal(&plain), mirrored);
    }
}
