//! Synthetic radiographs for the benchmark and the tests: knees drawn as on a PA view (femoral
//! condyles, joint space, tibial plateau, fibula) on a dark canvas, blurred a little, with grain.
//! Nothing here comes from real images.

/// A small pseudo-random generator (xorshift32): deterministic, no dependency.
pub struct XorShift32(u32);

impl XorShift32 {
    /// Starts from `state` (0 is replaced by 1: xorshift never leaves 0).
    pub fn new(state: u32) -> Self {
        XorShift32(state.max(1))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Grey level of a drawn right knee (PA view: fibula on the image's left) of width `size`
/// centred on `(cx, cy)` at pixel `(x, y)`, or `None` outside the leg.
fn drawn_knee(x: u32, y: u32, cx: f32, cy: f32, size: f32, mirrored: bool) -> Option<f32> {
    let mut u = (x as f32 - cx) / size;
    let v = (y as f32 - cy) / size;
    if mirrored {
        u = -u;
    }
    let soft = 0.42 - 0.08 * (v.abs() - 0.3).max(0.0);
    if u.abs() > soft {
        return None;
    }
    // Femur: shaft widening into two rounded condyles above the joint space.
    let condyle_half = 0.13 + 0.17 * ((v + 0.45) / 0.35).clamp(0.0, 1.0).sqrt();
    let lobe = ((u.abs() - 0.15) / 0.15).clamp(-1.0, 1.0);
    let condyle_bottom =
        -0.03 + 0.04 * (1.0 - lobe * lobe).sqrt() - 0.05 * (1.0 - (u / 0.04).abs()).max(0.0);
    let femur = v < condyle_bottom && u.abs() < condyle_half;
    // Tibia: plateau below the joint space narrowing into the shaft.
    let tibia_half = 0.3 - 0.18 * ((v - 0.1) / 0.25).clamp(0.0, 1.0);
    let tibia = v > 0.03 && u.abs() < tibia_half;
    // Fibula: head beside the tibia and a thin shaft below.
    let fibula = v > 0.12 && (u + 0.27).abs() < if v < 0.2 { 0.06 } else { 0.03 };
    let edge = |d: f32| 40.0 * (1.0 - (d / 0.02).min(1.0));
    Some(if femur || tibia {
        200.0 - edge(condyle_half - u.abs()).min(if tibia { edge(v - 0.03) } else { 40.0 })
    } else if fibula {
        170.0
    } else {
        70.0
    })
}

/// A synthetic radiograph: a dark canvas with knees `(cx, cy, size, mirrored)` drawn on it,
/// slightly blurred, with noise from `seed`. A right knee is drawn as on a PA view; `mirrored`
/// draws a left one.
pub fn knee_film(w: u32, h: u32, knees: &[(f32, f32, f32, bool)], seed: u32) -> image::GrayImage {
    let sharp = image::GrayImage::from_fn(w, h, |x, y| {
        let v = knees
            .iter()
            .find_map(|&(cx, cy, s, m)| drawn_knee(x, y, cx, cy, s, m))
            .unwrap_or(12.0);
        image::Luma([v as u8])
    });
    let sigma = knees.iter().map(|k| k.2).fold(0.0, f32::max) * 0.008;
    let mut img = image::imageops::blur(&sharp, sigma.max(0.5));
    let mut rng = XorShift32::new(seed.wrapping_mul(2_654_435_761));
    for p in img.pixels_mut() {
        p[0] = p[0].saturating_add((rng.next_u32() % 13) as u8);
    }
    img
}

/// A single-knee joint crop like the training images: one drawn knee filling the image.
pub fn synthetic_knee(width: u32, height: u32, seed: u32) -> image::GrayImage {
    let (w, h) = (width as f32, height as f32);
    knee_film(
        width,
        height,
        &[(w / 2.0, h / 2.0, KNEE_PER_CROP * w.min(h), false)],
        seed,
    )
}

/// The drawn knee's size in a joint crop, relative to the crop's side.
pub const KNEE_PER_CROP: f32 = 1.15;

/// A bilateral radiograph: the patient's right knee on the image's left, the left on its right.
pub fn synthetic_bilateral(width: u32, height: u32, seed: u32) -> image::GrayImage {
    let (w, h) = (width as f32, height as f32);
    let size = 0.42 * h.min(w / 2.0 / 0.75);
    knee_film(
        width,
        height,
        &[
            (0.27 * w, 0.5 * h, size, false),
            (0.73 * w, 0.5 * h, size, true),
        ],
        seed,
    )
}
