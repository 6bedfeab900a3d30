//! Evaluation metrics for KL grading: accuracy, quadratic-weighted kappa, MAE, per-grade scores,
//! the confusion matrix and the KL≥2 screening figures, plus a plain-text report of them.

use serde::Serialize;
use std::fmt::Write;
use thiserror::Error;

/// Grades at or above this count as osteoarthritis in the binary screening figures.
pub const POSITIVE_GRADE: u8 = 2;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetricsError {
    #[error("{truth} true grades but {pred} predictions: every image needs both")]
    LengthMismatch { truth: usize, pred: usize },
    #[error("{which} grade {grade} at position {index} is outside 0..{classes}")]
    Grade {
        which: &'static str,
        grade: u8,
        index: usize,
        classes: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub grade: u8,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of images whose true grade is `grade`.
    pub support: u64,
}

/// All ratios are 0.0 when their denominator is zero (as scikit-learn's `zero_division=0`),
/// so an empty evaluation gives zeros, never NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    /// Cohen's kappa with quadratic weights over the full grade range 0..classes.
    pub qwk: f64,
    pub mae: f64,
    /// Accuracy of the KL≥2 (positive) vs KL<2 decision.
    pub binary_accuracy: f64,
    /// Recall of KL≥2.
    pub sensitivity: f64,
    /// Recall of KL<2.
    pub specificity: f64,
    /// `confusion[truth][pred]`, classes × classes.
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassMetrics>,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn check_grades(which: &'static str, grades: &[u8], classes: usize) -> Result<(), MetricsError> {
    match grades.iter().position(|&g| usize::from(g) >= classes) {
        Some(index) => Err(MetricsError::Grade {
            which,
            grade: grades[index],
            index,
            classes,
        }),
        None => Ok(()),
    }
}

/// Quadratic-weighted kappa from a confusion matrix: `1 − Σ w·O / Σ w·E`, `w_ij = (i − j)²`,
/// `E` the outer product of the marginals over n. Undefined (zero denominator) gives 0.0.
fn quadratic_kappa(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.len();
    let rows: Vec<f64> = confusion
        .iter()
        .map(|r| r.iter().sum::<u64>() as f64)
        .collect();
    let cols: Vec<f64> = (0..k)
        .map(|j| confusion.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let n: f64 = rows.iter().sum();
    let (mut observed, mut expected) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = (i as f64 - j as f64).powi(2);
            observed += w * confusion[i][j] as f64;
            expected += w * ratio(rows[i] * cols[j], n);
        }
    }
    if expected == 0.0 {
        0.0
    } else {
        1.0 - observed / expected
    }
}

/// Metrics of predicted against true grades, each in 0..classes.
pub fn compute(truth: &[u8], pred: &[u8], classes: usize) -> Result<Metrics, MetricsError> {
    // Grades are bytes, so at most 256 classes can ever occur.
    let classes = classes.min(256);
    if truth.len() != pred.len() {
        return Err(MetricsError::LengthMismatch {
            truth: truth.len(),
            pred: pred.len(),
        });
    }
    check_grades("true", truth, classes)?;
    check_grades("predicted", pred, classes)?;

    let n = truth.len();
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[usize::from(t)][usize::from(p)] += 1;
    }
    let correct: u64 = (0..classes).map(|i| confusion[i][i]).sum();
    let abs_error: u64 = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| u64::from(t.abs_diff(p)))
        .sum();

    let per_class = (0..=u8::MAX)
        .take(classes)
        .map(|grade| {
            let c = usize::from(grade);
            let tp = confusion[c][c] as f64;
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            let (fn_, fp) = (support as f64 - tp, predicted as f64 - tp);
            ClassMetrics {
                grade,
                precision: ratio(tp, predicted as f64),
                recall: ratio(tp, support as f64),
                f1: ratio(2.0 * tp, 2.0 * tp + fp + fn_),
                support,
            }
        })
        .collect();

    // Binary screening counts: [truth positive][pred positive].
    let mut binary = [[0u64; 2]; 2];
    for (&t, &p) in truth.iter().zip(pred) {
        binary[usize::from(t >= POSITIVE_GRADE)][usize::from(p >= POSITIVE_GRADE)] += 1;
    }
    let [[tn, fp], [fn_, tp]] = binary.map(|row| row.map(|c| c as f64));

    Ok(Metrics {
        n,
        accuracy: ratio(correct as f64, n as f64),
        qwk: quadratic_kappa(&confusion),
        mae: ratio(abs_error as f64, n as f64),
        binary_accuracy: ratio(tp + tn, n as f64),
        sensitivity: ratio(tp, tp + fn_),
        specificity: ratio(tn, tn + fp),
        confusion,
        per_class,
    })
}

impl Metrics {
    /// A plain-text report: headline figures, per-grade table and labelled confusion matrix.
    pub fn to_text(&self) -> String {
        // Writing to a String cannot fail, so the fmt::Results below are safely ignored.
        let mut s = String::new();
        let _ = writeln!(s, "KL grading on {} images", self.n);
        let _ = writeln!(s, "  accuracy               {:.4}", self.accuracy);
        let _ = writeln!(s, "  quadratic kappa (QWK)  {:.4}", self.qwk);
        let _ = writeln!(s, "  mean absolute error    {:.4} grades", self.mae);
        let _ = writeln!(s, "Screening KL>={POSITIVE_GRADE} vs KL<{POSITIVE_GRADE}");
        let _ = writeln!(s, "  accuracy               {:.4}", self.binary_accuracy);
        let _ = writeln!(s, "  sensitivity            {:.4}", self.sensitivity);
        let _ = writeln!(s, "  specificity            {:.4}", self.specificity);
        let _ = writeln!(s);
        let _ = writeln!(s, "grade  precision  recall      f1  support");
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:>5}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                c.grade, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "confusion matrix (rows: true KL, columns: predicted KL)");
        let _ = write!(s, "true\\pred");
        for j in 0..self.confusion.len() {
            let _ = write!(s, " {j:>6}");
        }
        let _ = writeln!(s);
        for (i, row) in self.confusion.iter().enumerate() {
            let _ = write!(s, "{i:>9}");
            for count in row {
                let _ = write!(s, " {count:>6}");
            }
            let _ = writeln!(s);
        }
        s
    }
}
