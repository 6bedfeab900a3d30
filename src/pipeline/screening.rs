//! The screening call: osteoarthritis (KL ≥ 2) is called when P(KL ≥ 2) reaches a threshold
//! chosen for a target sensitivity on the receiver operating characteristic (ROC) of a labelled
//! set — the model card's selection slice, or a site's cross-validated predictions.
//!
//! [`roc`] and [`auc`] equal scikit-learn's `roc_curve(drop_intermediate=False)` and
//! `roc_auc_score`; [`operating_point`] picks the highest threshold that still reaches the target
//! sensitivity, which gives the best specificity among those that do.

use serde::{Deserialize, Serialize};

pub use crate::record::OperatingPoint;

/// Default target sensitivity of the OA call.
pub const DEFAULT_TARGET_SENSITIVITY: f64 = 0.90;

/// One point of a ROC curve: calling positive every score ≥ `threshold` gives this sensitivity
/// and specificity on the set it was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    pub threshold: f32,
    pub sensitivity: f64,
    pub specificity: f64,
}

/// A ROC curve and what it was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roc {
    /// Where the scores came from, in words (e.g. "selection slice of train, 826 knees").
    pub source: String,
    pub positives: usize,
    pub negatives: usize,
    /// From the highest threshold down; every distinct score is a threshold.
    pub points: Vec<RocPoint>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RocError {
    #[error("{scores} scores but {labels} labels")]
    LengthMismatch { scores: usize, labels: usize },
    #[error("a ROC curve needs both OA and non-OA knees ({positives} and {negatives} here)")]
    OneClass { positives: usize, negatives: usize },
    #[error("score {0} is not a number")]
    NotANumber(f32),
    #[error("target sensitivity {0} is not in (0, 1]")]
    Target(f64),
}

/// The ROC curve of `scores` (higher means OA) against `positive`.
pub fn roc(scores: &[f32], positive: &[bool], source: &str) -> Result<Roc, RocError> {
    if scores.len() != positive.len() {
        return Err(RocError::LengthMismatch {
            scores: scores.len(),
            labels: positive.len(),
        });
    }
    if let Some(&bad) = scores.iter().find(|s| s.is_nan()) {
        return Err(RocError::NotANumber(bad));
    }
    let positives = positive.iter().filter(|&&p| p).count();
    let negatives = positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(RocError::OneClass {
            positives,
            negatives,
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        match positive[k] {
            true => tp += 1,
            false => fp += 1,
        }
        let last_of_its_score = order.get(i + 1).is_none_or(|&n| scores[n] != scores[k]);
        if last_of_its_score {
            points.push(RocPoint {
                threshold: scores[k],
                sensitivity: tp as f64 / positives as f64,
                specificity: (negatives - fp) as f64 / negatives as f64,
            });
        }
    }
    Ok(Roc {
        source: source.to_string(),
        positives,
        negatives,
        points,
    })
}

/// The area under the curve (trapezoids from (0, 0) to (1, 1)).
pub fn auc(roc: &Roc) -> f64 {
    let mut area = 0.0;
    let (mut x0, mut y0) = (0.0, 0.0);
    for p in &roc.points {
        let (x, y) = (1.0 - p.specificity, p.sensitivity);
        area += (x - x0) * (y + y0) / 2.0;
        (x0, y0) = (x, y);
    }
    area + (1.0 - x0) * (1.0 + y0) / 2.0
}

/// The highest threshold whose sensitivity reaches `target` on `roc`.
pub fn operating_point(roc: &Roc, target: f64) -> Result<OperatingPoint, RocError> {
    if !(target > 0.0 && target <= 1.0) {
        return Err(RocError::Target(target));
    }
    // Sensitivity only grows as the threshold falls, and the last point reaches 1.
    let p = roc
        .points
        .iter()
        .find(|p| p.sensitivity >= target)
        .or(roc.points.last())
        .ok_or(RocError::OneClass {
            positives: roc.positives,
            negatives: roc.negatives,
        })?;
    Ok(OperatingPoint {
        threshold: p.threshold,
        target_sensitivity: target,
        sensitivity: p.sensitivity,
        specificity: p.specificity,
        source: roc.source.clone(),
    })
}

/// The best sensitivity `roc` reaches while its specificity stays at least `specificity`: two
/// scores compared at the same specificity (0 when no point is that specific).
pub fn sensitivity_at_specificity(roc: &Roc, specificity: f64) -> f64 {
    (roc.points.iter())
        .filter(|p| p.specificity >= specificity)
        .map(|p| p.sensitivity)
        .fold(0.0, f64::max)
}

/// Sensitivity and specificity of the calls `called` against the truth `positive`.
pub fn rates(called: &[bool], positive: &[bool]) -> (f64, f64) {
    let (mut tp, mut p, mut tn, mut n) = (0usize, 0usize, 0usize, 0usize);
    for (&called, &pos) in called.iter().zip(positive) {
        match pos {
            true => (p, tp) = (p + 1, tp + usize::from(called)),
            false => (n, tn) = (n + 1, tn + usize::from(!called)),
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (ratio(tp, p), ratio(tn, n))
}

/// Sensitivity and specificity of calling OA when a score reaches `threshold`.
pub fn rates_at(scores: &[f32], positive: &[bool], threshold: f32) -> (f64, f64) {
    let called: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
    rates(&called, positive)
}
