//! The OA call: ROC and AUC against scikit-learn (fixtures by `scripts/make_roc_fixtures.py`), the
//! operating point for a target sensitivity, and the threshold a classifier derives from its card's
//! stored ROC, applied to every knee it grades.

use kneescreen::pipeline::model::{Classifier, ModelError};
use kneescreen::pipeline::screening::{
    auc, operating_point, rates_at, roc, sensitivity_at_specificity, Roc, RocError, RocPoint,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::support::util::{self, fixture};

#[derive(Deserialize)]
struct Case {
    name: String,
    scores: Vec<f32>,
    labels: Vec<bool>,
    thresholds: Vec<f32>,
    sensitivity: Vec<f64>,
    specificity: Vec<f64>,
    auc: f64,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture("screening/roc.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

#[test]
fn roc_and_auc_match_sklearn() {
    for c in cases() {
        let r = roc(&c.scores, &c.labels, &c.name).unwrap();
        let thresholds: Vec<f32> = r.points.iter().map(|p| p.threshold).collect();
        assert_eq!(thresholds, c.thresholds, "{}", c.name);
        for (p, (sens, spec)) in r
            .points
            .iter()
            .zip(c.sensitivity.iter().zip(&c.specificity))
        {
            assert!((p.sensitivity - sens).abs() < 1e-12, "{}", c.name);
            assert!((p.specificity - spec).abs() < 1e-12, "{}", c.name);
        }
        assert!(
            (auc(&r) - c.auc).abs() < 1e-12,
            "{}: {} vs {}",
            c.name,
            auc(&r),
            c.auc
        );
    }
}

#[test]
fn the_operating_point_is_the_highest_threshold_that_reaches_the_target() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "overlapping")
        .unwrap();
    let r = roc(&c.scores, &c.labels, "overlapping").unwrap();
    for target in [0.5, 0.8, 0.9, 0.95, 1.0] {
        let op = operating_point(&r, target).unwrap();
        assert!(op.sensitivity >= target, "{target}");
        // Measured again from the scores, the threshold gives what the point says.
        let (sens, spec) = rates_at(&c.scores, &c.labels, op.threshold);
        assert_eq!((sens, spec), (op.sensitivity, op.specificity));
        // Any higher threshold misses the target: no better specificity was left on the table.
        let higher: Vec<&RocPoint> = r
            .points
            .iter()
            .filter(|p| p.threshold > op.threshold)
            .collect();
        assert!(higher.iter().all(|p| p.sensitivity < target), "{target}");
    }
}

#[test]
fn unusable_rocs_and_targets_are_refused() {
    assert_eq!(
        roc(&[0.2, 0.9], &[true, true], "x").unwrap_err(),
        RocError::OneClass {
            positives: 2,
            negatives: 0
        }
    );
    assert!(matches!(
        roc(&[0.2], &[true, false], "x"),
        Err(RocError::LengthMismatch { .. })
    ));
    assert!(matches!(
        roc(&[f32::NAN, 0.1], &[true, false], "x"),
        Err(RocError::NotANumber(_))
    ));
    let r = roc(&[0.2, 0.9], &[false, true], "x").unwrap();
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(
            matches!(operating_point(&r, bad), Err(RocError::Target(_))),
            "{bad}"
        );
    }
}

/// A ROC whose operating point for sensitivity 0.9 is 0.25 and for 0.5 is 0.6.
fn stored_roc() -> Roc {
    let point = |threshold, sensitivity, specificity| RocPoint {
        threshold,
        sensitivity,
        specificity,
    };
    Roc {
        source: "a test slice (10 knees)".into(),
        positives: 4,
        negatives: 6,
        points: vec![
            point(0.8, 0.25, 1.0),
            point(0.6, 0.5, 1.0),
            point(0.4, 0.75, 0.833),
            point(0.25, 1.0, 0.667),
            point(0.05, 1.0, 0.0),
        ],
    }
}

#[test]
fn sensitivities_are_compared_at_the_same_specificity() {
    let r = stored_roc();
    assert_eq!(sensitivity_at_specificity(&r, 1.0), 0.5);
    assert_eq!(sensitivity_at_specificity(&r, 0.8), 0.75);
    assert_eq!(sensitivity_at_specificity(&r, 0.667), 1.0);
    assert_eq!(sensitivity_at_specificity(&r, 0.0), 1.0);
    let none = Roc {
        points: vec![],
        ..stored_roc()
    };
    assert_eq!(sensitivity_at_specificity(&none, 0.5), 0.0);
}

#[test]
fn a_classifier_derives_its_threshold_from_the_cards_roc_and_calls_oa_by_it() {
    let dir = util::models_copy(|card| card["models"]["fp32"]["oa_roc"] = json!(stored_roc()));
    let mut classifier = Classifier::load(dir.path(), "fp32").unwrap();
    let call = classifier.oa_call().expect("an operating point").clone();
    assert_eq!((call.threshold, call.target_sensitivity), (0.25, 0.9));
    assert_eq!(call.source, "a test slice (10 knees)");
    classifier.set_target_sensitivity(0.5).unwrap();
    assert_eq!(classifier.oa_call().unwrap().threshold, 0.6);
    assert!(matches!(
        classifier.set_target_sensitivity(1.2),
        Err(ModelError::OperatingPoint(RocError::Target(_)))
    ));

    // Every knee of every record: OA exactly when its probability reaches the threshold, here
    // put between the sample knees' probabilities so that both sides are tried.
    let images = util::temp_dir();
    let files = sample_images(images.path());
    let shipped = util::models_copy(|_| {});
    let mut found: Vec<f32> = analyze(shipped.path(), &[], &files)
        .iter()
        .flat_map(knees)
        .map(|k| k["oa_probability"].as_f64().unwrap() as f32)
        .collect();
    found.sort_by(f32::total_cmp);
    let middle = found.len() / 2;
    let threshold = (found[middle - 1] + found[middle]) / 2.0;
    assert!(
        found[middle - 1] < threshold && threshold < found[middle],
        "{found:?}"
    );
    let point = |threshold, sensitivity, specificity| RocPoint {
        threshold,
        sensitivity,
        specificity,
    };
    let split = Roc {
        points: vec![point(threshold, 0.5, 1.0), point(0.0, 1.0, 0.0)],
        ..stored_roc()
    };
    let dir = util::models_copy(|card| card["models"]["fp32"]["oa_roc"] = json!(split));
    let records = analyze(dir.path(), &["--oa-sensitivity", "0.5"], &files);
    let mut sides = (0, 0);
    for r in &records {
        assert_eq!(
            r["oa_call"]["threshold"].as_f64().unwrap() as f32,
            threshold
        );
        for k in knees(r) {
            let p = k["oa_probability"].as_f64().unwrap() as f32;
            assert_eq!(k["oa"].as_bool().unwrap(), p >= threshold, "{k}");
            match p >= threshold {
                true => sides.0 += 1,
                false => sides.1 += 1,
            }
        }
    }
    assert_eq!(sides, (found.len() - middle, middle));
}

/// `analyze --json --model fp32` with the models in `models` and `extra` arguments.
fn analyze(models: &std::path::Path, extra: &[&str], files: &[std::path::PathBuf]) -> Vec<Value> {
    let out = util::kneescreen()
        .args(["analyze", "--json", "--model", "fp32", "--models-dir"])
        .arg(models)
        .args(extra)
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", util::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn knees(record: &Value) -> Vec<Value> {
    record["knees"].as_array().unwrap().clone()
}

#[test]
fn without_a_roc_oa_means_grade_two_or_more() {
    let dir = util::models_copy(|card| {
        card["models"]["fp32"]
            .as_object_mut()
            .unwrap()
            .remove("oa_roc");
    });
    let classifier = Classifier::load(dir.path(), "fp32").unwrap();
    assert!(classifier.oa_call().is_none());
    let images = util::temp_dir();
    let records = analyze(dir.path(), &[], &sample_images(images.path()));
    assert_eq!(records.len(), 7);
    for r in &records {
        assert!(r.get("oa_call").is_none());
        assert_eq!(r["oa"].as_bool(), Some(r["grade"].as_u64().unwrap() >= 2));
    }
}

/// Six drawn knee crops and a drawn two-knee radiograph, written into `dir`.
fn sample_images(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for seed in 0..6 {
        let path = dir.join(format!("knee{seed}.png"));
        util::write_png(&path, &util::synthetic_knee(224, 224, 500 + seed));
        files.push(path);
    }
    let both = dir.join("both.png");
    util::write_png(&both, &util::synthetic_bilateral(1200, 800, 3));
    files.push(both);
    files
}
