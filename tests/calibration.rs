//! Site calibration: the fit against scikit-learn (fixtures by `scripts/make_fit_fixtures.py`), on a
//! separable set, the folds, the refusals, the site head's Grad-CAM against finite differences,
//! saving, activating, tampering and reverting, and `kneescreen calibrate` end to end.

use std::fs;

use kneescreen::calibration::{
    self, check, collect, fit, fit_head, folds, heads, CalibrationError, Example, MIN_KNEES,
};
use kneescreen::pipeline::cam;
use kneescreen::pipeline::decode::limits::Limits;
use kneescreen::pipeline::head::Head;
use kneescreen::pipeline::model::{default_models_dir, Classifier, KneeFeatures, ModelError};
use kneescreen::pipeline::preprocess;
use kneescreen::pipeline::screening::{Roc, RocPoint};
use kneescreen::pipeline::site_head::{self, CvFigures, Provenance, SiteHead, SiteHeadError};
use serde::Deserialize;
use serde_json::Value;

use crate::support::util::{self, fixture, XorShift32};

#[derive(Deserialize)]
struct FitCase {
    name: String,
    x: Vec<f64>,
    y: Vec<u8>,
    dims: usize,
    classes: usize,
    lam: f64,
    w: Vec<f64>,
    b: Vec<f64>,
    probabilities: Vec<f64>,
}

fn centred(v: &[f64]) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| x - mean).collect()
}

#[test]
fn the_fit_matches_sklearn() {
    let text = fs::read_to_string(fixture("calibration/fit.json")).unwrap();
    let cases: Vec<FitCase> = serde_json::from_str(&text).unwrap();
    for c in cases {
        let samples = fit::Samples {
            x: &c.x,
            y: &c.y,
            dims: c.dims,
            classes: c.classes,
        };
        let m = fit::fit(&samples, c.lam);
        assert!(m.converged, "{}: {} iterations", c.name, m.iterations);
        for (i, (a, b)) in m.w.iter().zip(&c.w).enumerate() {
            assert!((a - b).abs() < 1e-4, "{}: w[{i}] {a} vs {b}", c.name);
        }
        // The intercept is not penalised: only its differences between classes are defined.
        for (a, b) in centred(&m.b).iter().zip(centred(&c.b)) {
            assert!((a - b).abs() < 1e-4, "{}: b {a} vs {b}", c.name);
        }
        for (row, want) in c.x.chunks(c.dims).zip(c.probabilities.chunks(c.classes)) {
            for (p, q) in m.probabilities(row).iter().zip(want) {
                assert!((p - q).abs() < 1e-5, "{}: p {p} vs {q}", c.name);
            }
        }
    }
}

/// `n` knees per grade whose features are a grade-specific direction plus noise.
fn separable(n: usize, dims: usize, seed: u32) -> Vec<Example> {
    let mut rng = XorShift32::new(seed);
    let mut noise = move || (rng.next_u32() % 1000) as f32 / 1000.0 - 0.5;
    (0..5u8)
        .flat_map(|grade| (0..n).map(move |i| (grade, i)))
        .map(|(grade, i)| {
            let image: Vec<f32> = (0..dims)
                .map(|d| {
                    noise()
                        + if d % 5 == usize::from(grade) {
                            2.0
                        } else {
                            0.0
                        }
                })
                .collect();
            Example {
                name: format!("{grade}/knee{i}.png"),
                grade,
                features: KneeFeatures {
                    mirror: Some(image.iter().map(|v| v + 0.01).collect()),
                    image,
                },
            }
        })
        .collect()
}

#[test]
fn a_separable_set_is_learned_and_generalises() {
    let train = separable(20, 40, 1);
    let test = separable(10, 40, 2);
    let rows: Vec<Vec<f32>> = train.iter().map(|e| e.features.mean()).collect();
    let grades: Vec<u8> = train.iter().map(|e| e.grade).collect();
    let (w, b) = fit_head(&rows, &grades, calibration::LAMBDA);
    let head = Head::linear(w, b, 40, 5).unwrap();
    for e in &test {
        let z = head.logits(&e.features.mean()).unwrap();
        let top = (0..5).max_by(|&a, &c| z[a].total_cmp(&z[c])).unwrap();
        assert_eq!(top, usize::from(e.grade), "{}", e.name);
    }
}

#[test]
fn folds_are_disjoint_stratified_and_do_not_depend_on_order() {
    let examples = separable(13, 5, 3);
    let fold = folds(&examples, 5);
    // One fold per knee, so folds cannot overlap; every fold holds each grade 2 or 3 times.
    assert_eq!(fold.len(), examples.len());
    for k in 0..5 {
        for grade in 0..5u8 {
            let n = (0..examples.len())
                .filter(|&i| fold[i] == k && examples[i].grade == grade)
                .count();
            assert!((2..=3).contains(&n), "fold {k} grade {grade}: {n}");
        }
    }
    let mut reversed = examples.clone();
    reversed.reverse();
    let fold_reversed = folds(&reversed, 5);
    for (i, e) in examples.iter().enumerate() {
        let j = reversed.iter().position(|r| r.name == e.name).unwrap();
        assert_eq!(fold[i], fold_reversed[j], "{}", e.name);
    }
}

#[test]
fn sets_that_cannot_make_a_head_are_refused_with_reasons() {
    let few = separable(MIN_KNEES / 5 - 1, 8, 4);
    assert!(matches!(
        check(&few, 8),
        Err(CalibrationError::TooFew { .. })
    ));

    let mut no_oa = separable(30, 8, 5);
    no_oa.retain(|e| e.grade < 2 || e.name.ends_with("knee0.png"));
    assert!(matches!(
        check(&no_oa, 8),
        Err(CalibrationError::TooFewPerCall { oa: 3, .. })
    ));

    let mut bad_grade = separable(12, 8, 6);
    bad_grade[0].grade = 7;
    assert!(matches!(
        check(&bad_grade, 8),
        Err(CalibrationError::Grade(7))
    ));
    assert!(matches!(
        check(&separable(12, 8, 7), 1280),
        Err(CalibrationError::Features(..))
    ));

    // A grade with few knees is said, not refused.
    let mut thin = separable(15, 8, 8);
    thin.retain(|e| e.grade != 4 || e.name.ends_with("knee1.png"));
    let notes = check(&thin, 8).unwrap();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].starts_with("KL4: only 1 knees"), "{notes:?}");
}

fn provenance() -> Provenance {
    let figures = CvFigures {
        accuracy: 0.5,
        qwk: 0.5,
        oa_accuracy: 0.7,
        oa_sensitivity: 0.9,
        oa_specificity: 0.5,
        oa_auc: 0.8,
    };
    Provenance {
        created: "2026-12-01T10:00:00Z".into(),
        source: "a test".into(),
        knees_per_grade: vec![10; 5],
        folds: 5,
        lambda: calibration::LAMBDA,
        site: figures.clone(),
        shipped: figures,
        shipped_oa_sensitivity_at_site_specificity: 0.9,
        target_sensitivity: 0.9,
        decision: "a test".into(),
    }
}

/// A seeded random linear head for the fp32 backbone.
fn random_site_head(classifier: &Classifier) -> SiteHead {
    let mut rng = XorShift32::new(99);
    let mut r = move || ((rng.next_u32() % 2001) as f32 / 1000.0 - 1.0) * 0.05;
    let inputs = classifier.shipped_head().inputs();
    let w: Vec<f32> = (0..inputs * 5).map(|_| r()).collect();
    let b: Vec<f32> = (0..5).map(|_| r()).collect();
    let point = |threshold, sensitivity, specificity| RocPoint {
        threshold,
        sensitivity,
        specificity,
    };
    let roc = Roc {
        source: "a test".into(),
        positives: 2,
        negatives: 2,
        points: vec![
            point(0.7, 0.5, 1.0),
            point(0.3, 1.0, 0.5),
            point(0.1, 1.0, 0.0),
        ],
    };
    SiteHead::new(&classifier.sha256, (w, b, inputs, 5), roc, provenance())
}

#[test]
fn a_site_heads_grad_cam_is_exact_and_its_logits_are_the_linear_heads() {
    let models = util::models_copy(|_| {});
    let shipped = Classifier::load(models.path(), "fp32").unwrap();
    let stored = random_site_head(&shipped);
    let (file, sha) = heads::save(models.path(), &stored).unwrap();
    heads::activate(models.path(), &file, &sha).unwrap();
    let classifier = Classifier::load(models.path(), "fp32").unwrap();
    assert_eq!(classifier.head_id().name, format!("site-heads/{file}"));
    assert_eq!(classifier.oa_call().unwrap().threshold, 0.3);

    let input = preprocess::preprocess(&util::synthetic_knee(256, 256, 5));
    let c = classifier.classify(&input).unwrap();
    let features = c.features().unwrap();
    let head = stored.head().unwrap();
    assert_eq!(c.logits, head.logits(&features.mean()).unwrap());
    let sum: f32 = c.probabilities.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5);

    // For a linear head on global average pooling the channel weights are W[:, c] / 49, and
    // they match finite differences of the head's logits.
    let fmap = c.image.feature_map().unwrap();
    let cells = (fmap.height() * fmap.width()) as f32;
    let pooled = cam::global_average_pool(&fmap);
    for class in 0..5 {
        let alpha = cam::channel_weights(&fmap, classifier.head(), class).unwrap();
        for k in (0..pooled.len()).step_by(41) {
            let expected = stored.w[k * 5 + class] / cells;
            assert!((alpha[k] - expected).abs() <= 1e-6 * expected.abs(), "{k}");
            let h = 1e-2_f32;
            let (mut up, mut down) = (pooled.clone(), pooled.clone());
            up[k] += h;
            down[k] -= h;
            let z = |g: &[f32]| f64::from(head.logits(g).unwrap()[class]);
            let d = (z(&up) - z(&down)) / (2.0 * f64::from(h));
            assert!((f64::from(alpha[k]) - d / f64::from(cells)).abs() < 1e-5);
        }
    }
}

#[test]
fn a_changed_site_head_is_refused_and_revert_goes_back_to_the_shipped_head() {
    let models = util::models_copy(|_| {});
    let shipped = Classifier::load(models.path(), "fp32").unwrap();
    let (file, sha) = heads::save(models.path(), &random_site_head(&shipped)).unwrap();
    heads::activate(models.path(), &file, &sha).unwrap();
    // The other variant's backbone: the head does not apply there.
    let int8 = Classifier::load(models.path(), "int8").unwrap();
    assert_eq!(int8.head_id().name, "shipped");

    let path = models.path().join(site_head::DIR).join(&file);
    let mut text = fs::read_to_string(&path).unwrap();
    text = text.replacen("0.", "1.", 1);
    fs::write(&path, text).unwrap();
    match Classifier::load(models.path(), "fp32") {
        Err(ModelError::SiteHead(SiteHeadError::HashMismatch { .. })) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a changed site head was used"),
    }
    assert_eq!(heads::revert(models.path()).unwrap(), Some(file.clone()));
    assert!(path.is_file(), "reverting keeps the head on disk");
    let back = Classifier::load(models.path(), "fp32").unwrap();
    assert_eq!(back.head_id().name, "shipped");
    assert_eq!(heads::revert(models.path()).unwrap(), None);
}

/// A site head is signed with the device's calibration key; the records name it. The same head
/// on another device (another key), or with its signature gone, is refused with the reason.
#[test]
fn a_site_head_is_used_only_on_the_device_that_signed_it() {
    let here = util::models_copy(|_| {});
    let shipped = Classifier::load(here.path(), "fp32").unwrap();
    let (file, sha) = heads::save(here.path(), &random_site_head(&shipped)).unwrap();
    heads::activate(here.path(), &file, &sha).unwrap();
    let signer = Classifier::load(here.path(), "fp32")
        .unwrap()
        .head_id()
        .signer;
    assert!(signer
        .unwrap()
        .starts_with("this device's calibration key (key "));

    // The heads folder copied to another device, which has a key of its own.
    let there = util::models_copy(|_| {});
    let other = Classifier::load(there.path(), "fp32").unwrap();
    heads::save(there.path(), &random_site_head(&other)).unwrap(); // makes that device's key
    for name in [
        file.clone(),
        format!("{file}.sig"),
        site_head::ACTIVE.to_string(),
    ] {
        let from = here.path().join(site_head::DIR).join(&name);
        fs::copy(&from, there.path().join(site_head::DIR).join(&name)).unwrap();
    }
    match Classifier::load(there.path(), "fp32") {
        Err(ModelError::SiteHead(e @ SiteHeadError::NotThisDevice { .. })) => {
            assert!(
                e.to_string().contains("key this device does not trust"),
                "{e}"
            )
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("another device's head was used"),
    }
    // Its signature removed here: refused too.
    fs::remove_file(here.path().join(site_head::DIR).join(format!("{file}.sig"))).unwrap();
    let e = Classifier::load(here.path(), "fp32")
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("is not signed") && e.contains("calibrate"),
        "{e}"
    );
}

#[test]
fn calibrate_end_to_end_refuses_what_it_cannot_use_and_activates_only_on_gain() {
    if util::emulated("calibrate end to end") {
        return;
    }
    let models = util::models_copy(|_| {});
    let site = util::temp_dir();
    for grade in 0..5u32 {
        let sub = site.path().join(grade.to_string());
        fs::create_dir(&sub).unwrap();
        for i in 0..11 {
            let img = util::synthetic_knee(224, 224, 1000 + grade * 50 + i);
            util::write_png(&sub.join(format!("k{i}.png")), &img);
        }
    }
    // A copy of a file, a two-knee radiograph, a folder that is no grade and a stray file.
    fs::copy(site.path().join("0/k0.png"), site.path().join("1/copy.png")).unwrap();
    util::write_png(
        &site.path().join("2/both.png"),
        &util::synthetic_bilateral(1200, 800, 3),
    );
    fs::create_dir(site.path().join("7")).unwrap();
    fs::write(site.path().join("notes.txt"), "x").unwrap();
    fs::write(
        site.path().join("3/broken.png"),
        b"\x89PNG\r\n\x1a\n garbage",
    )
    .unwrap();
    let before: Vec<String> = ["0/k0.png", "3/broken.png"]
        .iter()
        .map(|f| util::sha256(&site.path().join(f)))
        .collect();

    let out = util::kneescreen()
        .args(["calibrate", "--json", "--model", "fp32", "--models-dir"])
        .arg(models.path())
        .arg(site.path())
        .output()
        .unwrap();
    let err = util::stderr(&out);
    assert!(out.status.success(), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused: Vec<String> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["path"].as_str().unwrap(),
                r["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(refused.len(), 5, "{refused:#?}");
    for (what, why) in [
        ("1/copy.png", "the same file as 0/k0.png"),
        ("2/both.png", "2 knee joints found"),
        ("/7 ", "not a KL grade"),
        ("notes.txt", "not inside a grade folder"),
        ("3/broken.png", "PNG"),
    ] {
        assert!(
            refused.iter().any(|r| r.contains(what) && r.contains(why)),
            "{what}: {refused:#?}"
        );
    }
    let p = &report["provenance"];
    assert_eq!(
        p["knees_per_grade"],
        serde_json::json!([11, 11, 11, 11, 11])
    );
    let (site_f, shipped_f) = (&p["site"], &p["shipped"]);
    let not_worse = ["accuracy", "qwk"]
        .iter()
        .all(|k| site_f[k].as_f64().unwrap() >= shipped_f[k].as_f64().unwrap())
        && site_f["oa_sensitivity"].as_f64().unwrap()
            >= p["shipped_oa_sensitivity_at_site_specificity"]
                .as_f64()
                .unwrap();
    assert_eq!(report["activated"].as_bool(), Some(not_worse), "{report:#}");
    let saved = std::path::PathBuf::from(report["file"].as_str().unwrap());
    assert!(saved.is_file());
    assert_eq!(util::sha256(&saved), report["sha256"].as_str().unwrap());

    // --force activates it whatever the figures; records then name it; --revert goes back.
    let out = util::kneescreen()
        .args(["calibrate", "--force", "--model", "fp32", "--models-dir"])
        .arg(models.path())
        .arg(site.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", util::stderr(&out));
    let text = util::stdout(&out);
    assert!(
        text.contains("shipped head") && text.contains("site head"),
        "{text}"
    );
    let analyze = |models: &std::path::Path| {
        let out = util::kneescreen()
            .args(["analyze", "--json", "--model", "fp32", "--models-dir"])
            .arg(models)
            .arg(site.path().join("4/k0.png"))
            .output()
            .unwrap();
        let records: Value = serde_json::from_slice(&out.stdout).unwrap();
        records[0]["model"]["head"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(analyze(models.path()).starts_with("site-heads/"));
    let out = util::kneescreen()
        .args(["calibrate", "--revert", "--models-dir"])
        .arg(models.path())
        .output()
        .unwrap();
    assert!(util::stdout(&out).contains("back to the shipped head"));
    assert_eq!(analyze(models.path()), "shipped");

    // Inputs are only read.
    let after: Vec<String> = ["0/k0.png", "3/broken.png"]
        .iter()
        .map(|f| util::sha256(&site.path().join(f)))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn collecting_from_a_folder_without_grade_folders_says_how_to_lay_it_out() {
    let classifier = Classifier::load(&default_models_dir(), "fp32").unwrap();
    let dir = util::temp_dir();
    fs::write(dir.path().join("knee.png"), b"x").unwrap();
    let err = collect::from_dir(dir.path(), &classifier, &Limits::default(), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("folder of its KL grade"), "{err}");
}

/// Knees graded in the console: a study's picture read back from the results folder gives the
/// knee's features; the same picture in a second study, and a knee from an MR image, are refused
/// with their reasons.
#[test]
fn console_grades_refuse_a_repeated_knee_and_a_knee_not_from_an_x_ray() {
    use crate::support::dicom_writer;
    use kneescreen::calibration::site_grades;
    use kneescreen::store::results_dir;

    let results = util::temp_dir();
    let r = results.path();
    let classifier = Classifier::load(&default_models_dir(), "fp32").unwrap();
    let analyse = |bytes: &[u8]| {
        let sha = kneescreen::pipeline::digest::sha256_hex(bytes);
        kneescreen::pipeline::analyze(bytes, "test", &sha, &classifier, &Limits::default()).unwrap()
    };
    let mut png = Vec::new();
    util::synthetic_knee(224, 224, 11)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let knee = analyse(&png);
    results_dir::write_analysis(r, "knee-a", &knee).unwrap();
    results_dir::write_analysis(r, "knee-b", &knee).unwrap();
    let mr = dicom_writer::Spec {
        rows: 224,
        columns: 224,
        bits_allocated: 8,
        bits_stored: 8,
        modality: "MR",
        ..dicom_writer::Spec::default()
    };
    let pixels = util::synthetic_knee(224, 224, 12);
    let mr = analyse(&dicom_writer::write(
        &mr,
        &pixels.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(),
    ));
    results_dir::write_analysis(r, "knee-mr", &mr).unwrap();
    for (stem, grade) in [("knee-a", 2), ("knee-b", 2), ("knee-mr", 3)] {
        site_grades::set(r, stem, 0, Some(grade)).unwrap();
    }
    assert!(
        site_grades::set(r, "knee-a", 1, Some(2)).is_err(),
        "one knee only"
    );
    assert!(site_grades::set(r, "knee-a", 0, Some(5)).is_err(), "KL 0-4");

    let grades = site_grades::load(r).unwrap();
    assert_eq!(site_grades::counts(&grades), vec![0, 0, 2, 1, 0]);
    let got = site_grades::examples(r, &grades, &classifier);
    assert_eq!(got.examples.len(), 1);
    assert_eq!(got.examples[0].features, knee.features[0]);
    let reasons: Vec<String> = (got.refused.iter())
        .map(|x| format!("{}: {}", x.path, x.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("knee-b knee 1: the same knee image as knee-a knee 1"));
    assert!(reasons[1].starts_with("knee-mr knee 1: not a greyscale X-ray"));

    // A damaged grades file is reported and left as it is, never replaced by the next grade.
    let file = r.join(results_dir::SITE_GRADES);
    std::fs::write(&file, b"{\"knee-a\": {\"0\": 2").unwrap();
    let err = site_grades::load(r).unwrap_err();
    assert!(err.contains("damaged"), "{err}");
    assert!(site_grades::set(r, "knee-a", 0, Some(3)).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"{\"knee-a\": {\"0\": 2");
}
