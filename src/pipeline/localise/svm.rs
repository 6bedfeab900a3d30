//! The linear SVM that scores a HOG window as "knee joint centred in the window".
//!
//! Weights: `assets/kneelocalizer-svm.json`, from KneeLocalizer (Tiulpin et al., SCIA 2017),
//! Copyright (c) 2017 Aleksei Tiulpin, MIT licence (`assets/kneelocalizer-LICENSE.txt`).
//! The model scores a knee as it appears on the image's left half of a PA view (the patient's
//! right knee); a mirrored knee is scored with the mirrored weights.

use std::sync::OnceLock;

use crate::pipeline::localise::hog::{BINS, BLOCKS_PER_SIDE, BLOCK_LEN, DESCRIPTOR_LEN};

const WEIGHTS_JSON: &str = include_str!("assets/kneelocalizer-svm.json");

pub struct Svm {
    /// Weights for a knee as the model was trained on it.
    pub plain: Vec<f32>,
    /// The same weights for the horizontally mirrored window.
    pub mirrored: Vec<f32>,
    pub bias: f32,
}

impl Svm {
    /// The embedded model, parsed once.
    pub fn get() -> &'static Svm {
        static SVM: OnceLock<Svm> = OnceLock::new();
        SVM.get_or_init(|| {
            let json: serde_json::Value =
                serde_json::from_str(WEIGHTS_JSON).expect("embedded SVM weights are valid JSON");
            let plain: Vec<f32> = json["weights"]
                .as_array()
                .expect("SVM weights")
                .iter()
                .map(|v| v.as_f64().expect("numeric weight") as f32)
                .collect();
            assert_eq!(plain.len(), DESCRIPTOR_LEN, "SVM weight count");
            let bias = json["bias"].as_f64().expect("SVM bias") as f32;
            let mirrored = mirror(&plain);
            Svm {
                plain,
                mirrored,
                bias,
            }
        })
    }

    /// Weights of one block position (column-major block index) for either orientation.
    pub fn block_weights(&self, block: usize, mirrored: bool) -> &[f32] {
        let w = if mirrored {
            &self.mirrored
        } else {
            &self.plain
        };
        &w[block * BLOCK_LEN..][..BLOCK_LEN]
    }

    /// Decision value of a full descriptor.
    pub fn score(&self, descriptor: &[f32], mirrored: bool) -> f32 {
        let w = if mirrored {
            &self.mirrored
        } else {
            &self.plain
        };
        self.bias + dot(w, descriptor)
    }
}

/// Dot product with eight partial sums, which the compiler turns into SIMD code.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Descriptor permutation of a horizontal flip: block column, cell column and orientation
/// (bin `k` → `8 - k`) are reversed.
fn mirror(weights: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; weights.len()];
    for bx in 0..BLOCKS_PER_SIDE {
        for by in 0..BLOCKS_PER_SIDE {
            for cx in 0..2 {
                for cy in 0..2 {
                    for bin in 0..BINS {
                        let index = |bx: usize, cx: usize, bin: usize| {
                            ((bx * BLOCKS_PER_SIDE + by) * 4 + cx * 2 + cy) * BINS + bin
                        };
                        out[index(BLOCKS_PER_SIDE - 1 - bx, 1 - cx, BINS - 1 - bin)] =
                            weights[index(bx, cx, bin)];
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::localise::hog::hog_descriptor;

    #[test]
    fn mirroring_permutes_the_descriptor_of_a_flipped_window() {
        let window = image::GrayImage::from_fn(64, 64, |x, y| {
            let d = ((x as f32 - 20.0).powi(2) + (y as f32 - 30.0).powi(2) * 2.0).sqrt();
            image::Luma([(250.0 - d * 5.0).clamp(0.0, 255.0) as u8])
        });
        let flipped = image::imageops::flip_horizontal(&window);
        let a = mirror(&hog_descriptor(&window));
        let b = hog_descriptor(&flipped);
        let cosine = dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt();
        assert!(cosine > 0.98, "cosine {cosine}");
        let svm = Svm::get();
        assert!((svm.score(&hog_descriptor(&window), false) - svm.score(&b, true)).abs() < 0.2);
    }
}
