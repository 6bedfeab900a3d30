//! Site calibration: a linear head refitted on the shipped backbone's features to a clinic's own
//! graded knees, kept only when cross-validation shows it grades that clinic's images better.
//!
//! Graded knees (a folder `DIR/<grade>/…` read through the appliance's own analysis path, or
//! knees graded in the console) → pooled features of each knee and its mirror → k-fold
//! cross-validation of the site head against the shipped head on the same folds → the head fitted
//! on all knees, with the OA threshold re-derived from the cross-validated predictions → saved
//! next to the model card, and made active when it is not worse on accuracy, QWK and OA
//! sensitivity (or when forced).

pub mod collect;
pub mod fit;
pub mod heads;
pub mod site_grades;

use crate::pipeline::digest::sha256_hex;
use crate::pipeline::model::{Classifier, KneeFeatures, ModelError};
use crate::pipeline::screening::{self, Roc};
use crate::pipeline::site_head::{CvFigures, Provenance, SiteHead};
use crate::tools::metrics::{self, POSITIVE_GRADE};

/// Cross-validation folds.
pub const FOLDS: usize = 5;
/// L2 penalty of the fit (mean log-loss + λ/2 ‖W‖² on standardised features): chosen on the
/// simulated scanner's selection slice, 100 calibration knees (models/EXPERIMENTS.md, "Site
/// calibration"; `cargo run --example site_calibration`).
pub const LAMBDA: f64 = 10.0;
/// Fewest graded knees a calibration accepts.
pub const MIN_KNEES: usize = 50;
/// Fewest OA (KL ≥ 2) and non-OA knees each: the OA threshold needs both.
pub const MIN_PER_CALL: usize = 10;
/// Below this many knees a grade is thin: the head will rarely give it (said, not refused).
pub const THIN_GRADE: usize = 5;
const GRADES: usize = 5;

/// One graded knee: where it came from, its KL grade and its features.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub grade: u8,
    pub features: KneeFeatures,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{got} graded knees: calibration needs at least {MIN_KNEES}")]
    TooFew { got: usize },
    #[error("{oa} OA (KL 2-4) and {not_oa} non-OA (KL 0-1) knees: calibration needs at least {MIN_PER_CALL} of each")]
    TooFewPerCall { oa: usize, not_oa: usize },
    #[error("grade {0} is outside KL 0-4")]
    Grade(u8),
    #[error("the features of {0} are not the backbone's ({1} values)")]
    Features(String, usize),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What a calibration found: both heads' cross-validated figures, the fitted head and whether
/// it should become active.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub head: SiteHead,
    /// True when the site head is not worse than the shipped head on accuracy, QWK and OA
    /// sensitivity over the folds.
    pub better: bool,
    /// What the user should know: thin grades, the decision.
    pub notes: Vec<String>,
}

/// Knees per grade 0..4.
pub fn knees_per_grade(examples: &[Example]) -> Vec<usize> {
    let mut n = vec![0; GRADES];
    for e in examples {
        if let Some(c) = n.get_mut(usize::from(e.grade)) {
            *c += 1;
        }
    }
    n
}

/// Refuses sets too small to fit or judge a head; returns notes on thin grades.
pub fn check(examples: &[Example], inputs: usize) -> Result<Vec<String>, CalibrationError> {
    if let Some(e) = examples.iter().find(|e| usize::from(e.grade) >= GRADES) {
        return Err(CalibrationError::Grade(e.grade));
    }
    if let Some(e) = examples.iter().find(|e| {
        e.features.image.len() != inputs
            || e.features
                .mirror
                .as_ref()
                .is_some_and(|m| m.len() != inputs)
    }) {
        return Err(CalibrationError::Features(
            e.name.clone(),
            e.features.image.len(),
        ));
    }
    if examples.len() < MIN_KNEES {
        return Err(CalibrationError::TooFew {
            got: examples.len(),
        });
    }
    let oa = examples
        .iter()
        .filter(|e| e.grade >= POSITIVE_GRADE)
        .count();
    let not_oa = examples.len() - oa;
    if oa < MIN_PER_CALL || not_oa < MIN_PER_CALL {
        return Err(CalibrationError::TooFewPerCall { oa, not_oa });
    }
    Ok(knees_per_grade(examples)
        .iter()
        .enumerate()
        .filter(|(_, &n)| n < THIN_GRADE)
        .map(|(g, n)| format!("KL{g}: only {n} knees; the site head will seldom give this grade"))
        .collect())
}

/// The fold of each example: stratified by grade, the order within a grade fixed by the
/// example's name (so the same set always splits the same way).
pub fn folds(examples: &[Example], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| {
        let e = &examples[i];
        (e.grade, sha256_hex(e.name.as_bytes()))
    });
    let mut fold = vec![0; examples.len()];
    let mut position_in_grade = 0;
    for (n, &i) in order.iter().enumerate() {
        if n > 0 && examples[order[n - 1]].grade != examples[i].grade {
            position_in_grade = 0;
        }
        fold[i] = position_in_grade % k.max(1);
        position_in_grade += 1;
    }
    fold
}

/// Features standardised per channel; the linear model fitted on them is folded back onto the
/// raw features, so the stored head needs no scaler.
struct Standardiser {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardiser {
    fn fit(rows: &[Vec<f32>]) -> Standardiser {
        let d = rows.first().map_or(0, Vec::len);
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for r in rows {
            mean.iter_mut()
                .zip(r)
                .for_each(|(m, &v)| *m += f64::from(v) / n);
        }
        let mut var = vec![0.0; d];
        for r in rows {
            var.iter_mut()
                .zip(r.iter().zip(&mean))
                .for_each(|(s, (&v, m))| *s += (f64::from(v) - m).powi(2) / n);
        }
        let scale = var.into_iter().map(|v| v.sqrt().max(1e-6)).collect();
        Standardiser { mean, scale }
    }

    fn apply(&self, rows: &[Vec<f32>]) -> Vec<f64> {
        rows.iter()
            .flat_map(|r| {
                r.iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .map(|(&v, (m, s))| (f64::from(v) - m) / s)
            })
            .collect()
    }

    /// `w`, `b` of the standardised model as weights on the raw features.
    fn fold_back(&self, model: &fit::Linear) -> (Vec<f32>, Vec<f32>) {
        let k = model.classes;
        let mut b = model.b.clone();
        let mut w = Vec::with_capacity(model.w.len());
        for ((row, m), s) in model.w.chunks_exact(k).zip(&self.mean).zip(&self.scale) {
            for (c, &wc) in row.iter().enumerate() {
                w.push((wc / s) as f32);
                b[c] -= wc * m / s;
            }
        }
        (w, b.into_iter().map(|v| v as f32).collect())
    }
}

/// Fits a linear head on `rows` (mean pooled features) and `grades`: `(w, b)` on raw features.
pub fn fit_head(rows: &[Vec<f32>], grades: &[u8], lambda: f64) -> (Vec<f32>, Vec<f32>) {
    let scaler = Standardiser::fit(rows);
    let x = scaler.apply(rows);
    let samples = fit::Samples {
        x: &x,
        y: grades,
        dims: rows.first().map_or(0, Vec::len),
        classes: GRADES,
    };
    scaler.fold_back(&fit::fit(&samples, lambda))
}

/// Probabilities of a linear head `(w, b)` for one row.
pub fn linear_probabilities(w: &[f32], b: &[f32], row: &[f32]) -> Vec<f32> {
    let mut z: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    for (&x, wr) in row.iter().zip(w.chunks_exact(b.len())) {
        z.iter_mut()
            .zip(wr)
            .for_each(|(z, &w)| *z += f64::from(x) * f64::from(w));
    }
    let z: Vec<f32> = z.into_iter().map(|v| v as f32).collect();
    crate::pipeline::cam::softmax(&z)
}

/// The arg-max grade of each probability vector.
fn arg_max_grades(probabilities: &[Vec<f32>]) -> Vec<u8> {
    probabilities
        .iter()
        .map(|p| {
            (0..p.len())
                .rev()
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0) as u8
        })
        .collect()
}

/// The figures of one head's probabilities over labelled knees: OA called when P(KL ≥ 2)
/// reaches `threshold`, or by grade when there is none.
pub fn figures(
    probabilities: &[Vec<f32>],
    grades: &[u8],
    threshold: Option<f32>,
) -> Result<CvFigures, CalibrationError> {
    let pred = arg_max_grades(probabilities);
    let m = metrics::compute(grades, &pred, GRADES)?;
    let p_oa = oa_probabilities(probabilities);
    let called: Vec<bool> = match threshold {
        Some(t) => p_oa.iter().map(|&p| p >= t).collect(),
        None => pred.iter().map(|&g| g >= POSITIVE_GRADE).collect(),
    };
    let positive: Vec<bool> = grades.iter().map(|&g| g >= POSITIVE_GRADE).collect();
    let (oa_sensitivity, oa_specificity) = screening::rates(&called, &positive);
    let oa_correct = called.iter().zip(&positive).filter(|(c, p)| c == p).count();
    let oa_auc = screening::roc(&p_oa, &positive, "").map_or(0.5, |r| screening::auc(&r));
    Ok(CvFigures {
        accuracy: m.accuracy,
        qwk: m.qwk,
        oa_accuracy: oa_correct as f64 / called.len().max(1) as f64,
        oa_sensitivity,
        oa_specificity,
        oa_auc,
    })
}

fn oa_probabilities(probabilities: &[Vec<f32>]) -> Vec<f32> {
    probabilities
        .iter()
        .map(|p| p.iter().skip(usize::from(POSITIVE_GRADE)).sum())
        .collect()
}

/// The shipped head's probabilities for one knee: the mean of its logits on the two views,
/// through the card's temperature (what the appliance does without a site head).
pub fn shipped_probabilities(
    classifier: &Classifier,
    f: &KneeFeatures,
) -> Result<Vec<f32>, CalibrationError> {
    let head = classifier.shipped_head();
    let views: Vec<&Vec<f32>> = std::iter::once(&f.image).chain(&f.mirror).collect();
    let mut logits = vec![0.0f32; head.classes()];
    for v in &views {
        let z = head.logits(v).map_err(ModelError::from)?;
        logits
            .iter_mut()
            .zip(z)
            .for_each(|(a, z)| *a += z / views.len() as f32);
    }
    let t = classifier.shipped_temperature();
    let scaled: Vec<f32> = logits.iter().map(|z| z / t).collect();
    Ok(crate::pipeline::cam::softmax(&scaled))
}

/// Cross-validates, fits on everything, and decides. `classifier` must be the shipped backbone
/// without a site head (`Classifier::without_site_head`); `created` is the UTC time stamp.
pub fn calibrate(
    examples: &[Example],
    classifier: &Classifier,
    source: &str,
    target_sensitivity: f64,
    lambda: f64,
    created: &str,
) -> Result<Calibration, CalibrationError> {
    let mut notes = check(examples, classifier.shipped_head().inputs())?;
    let grades: Vec<u8> = examples.iter().map(|e| e.grade).collect();
    let rows: Vec<Vec<f32>> = examples.iter().map(|e| e.features.mean()).collect();
    let positive: Vec<bool> = grades.iter().map(|&g| g >= POSITIVE_GRADE).collect();

    // Out-of-fold predictions of the site head.
    let fold = folds(examples, FOLDS);
    let mut oof = vec![Vec::new(); examples.len()];
    for k in 0..FOLDS {
        let train: Vec<usize> = (0..examples.len()).filter(|&i| fold[i] != k).collect();
        let train_rows: Vec<Vec<f32>> = train.iter().map(|&i| rows[i].clone()).collect();
        let train_grades: Vec<u8> = train.iter().map(|&i| grades[i]).collect();
        let (w, b) = fit_head(&train_rows, &train_grades, lambda);
        for i in (0..examples.len()).filter(|&i| fold[i] == k) {
            oof[i] = linear_probabilities(&w, &b, &rows[i]);
        }
    }
    let source_text = format!(
        "cross-validated site knees ({}, {} knees)",
        source,
        examples.len()
    );
    let too_few = || CalibrationError::TooFewPerCall {
        oa: positive.iter().filter(|&&p| p).count(),
        not_oa: positive.iter().filter(|&&p| !p).count(),
    };
    let oa_roc: Roc =
        screening::roc(&oa_probabilities(&oof), &positive, &source_text).map_err(|_| too_few())?;
    let site_point =
        screening::operating_point(&oa_roc, target_sensitivity).map_err(|_| too_few())?;
    let site = figures(&oof, &grades, Some(site_point.threshold))?;

    let shipped_probs: Vec<Vec<f32>> = examples
        .iter()
        .map(|e| shipped_probabilities(classifier, &e.features))
        .collect::<Result<_, _>>()?;
    let shipped_threshold = classifier
        .shipped_oa_call(target_sensitivity)?
        .map(|c| c.threshold);
    let shipped = figures(&shipped_probs, &grades, shipped_threshold)?;
    // OA sensitivity is compared at the same specificity: on another scanner the shipped
    // threshold may call nearly every knee OA, a sensitivity that means nothing.
    let shipped_roc =
        screening::roc(&oa_probabilities(&shipped_probs), &positive, "").map_err(|_| too_few())?;
    let shipped_matched = screening::sensitivity_at_specificity(&shipped_roc, site.oa_specificity);

    let mut worse = Vec::new();
    if site.accuracy < shipped.accuracy {
        worse.push("accuracy");
    }
    if site.qwk < shipped.qwk {
        worse.push("QWK");
    }
    if site.oa_sensitivity < shipped_matched {
        worse.push("OA sensitivity at the same specificity");
    }
    let better = worse.is_empty();
    let decision = match better {
        true => "not worse than the shipped head on accuracy, QWK and OA sensitivity at the same \
            specificity over the folds"
            .to_string(),
        false => format!(
            "worse than the shipped head on {} over the folds",
            worse.join(", ")
        ),
    };
    notes.push(decision.clone());

    let (w, b) = fit_head(&rows, &grades, lambda);
    let provenance = Provenance {
        created: created.to_string(),
        source: source.to_string(),
        knees_per_grade: knees_per_grade(examples),
        folds: FOLDS,
        lambda,
        site,
        shipped,
        shipped_oa_sensitivity_at_site_specificity: shipped_matched,
        target_sensitivity,
        decision,
    };
    let inputs = classifier.shipped_head().inputs();
    let head = SiteHead::new(
        &classifier.sha256,
        (w, b, inputs, GRADES),
        oa_roc,
        provenance,
    );
    Ok(Calibration {
        head,
        better,
        notes,
    })
}

/// The calibration's figures as a table a clinician can read.
pub fn report_text(c: &Calibration, refused: usize) -> String {
    let p = &c.head.provenance;
    let per_grade: Vec<String> = p
        .knees_per_grade
        .iter()
        .enumerate()
        .map(|(g, n)| format!("KL{g} {n}"))
        .collect();
    let total: usize = p.knees_per_grade.iter().sum();
    let mut s = format!(
        "Site calibration on {}: {total} graded knees ({}){}\n",
        p.source,
        per_grade.join(", "),
        match refused {
            0 => String::new(),
            n => format!("; {n} files not used (listed above)"),
        }
    );
    s.push_str(&format!(
        "{}-fold cross-validation, OA call set for sensitivity {:.2}:\n",
        p.folds, p.target_sensitivity
    ));
    s.push_str("                accuracy    QWK   OA sensitivity  OA specificity  OA AUC\n");
    for (name, f) in [("shipped head", &p.shipped), ("site head", &p.site)] {
        s.push_str(&format!(
            "  {name:<12}  {:>8.3}  {:>6.3}  {:>14.3}  {:>14.3}  {:>6.3}\n",
            f.accuracy, f.qwk, f.oa_sensitivity, f.oa_specificity, f.oa_auc
        ));
    }
    s.push_str(&format!(
        "  (the shipped head at the site head's OA specificity: sensitivity {:.3})\n",
        p.shipped_oa_sensitivity_at_site_specificity
    ));
    for note in &c.notes {
        s.push_str(&format!("- {note}\n"));
    }
    s
}
