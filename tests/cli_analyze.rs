//! The real binary on temporary files: `analyze` (good and bad input), `preprocess`, `eval`.

use crate::support::util;

use std::fs;

use serde_json::Value;
use util::*;

fn analyze_json(files: &[&std::path::Path]) -> (std::process::Output, Value) {
    let mut args = vec!["analyze".to_string(), "--json".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let out = kneescreen().args(&args).output().expect("runs");
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out, json)
}

#[test]
fn analyze_grades_a_png_with_the_documented_keys() {
    let dir = temp_dir();
    let path = dir.path().join("knee.png");
    write_png(&path, &synthetic_knee(300, 280, 1));
    let (out, json) = analyze_json(&[&path]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let r = &json[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(r["file"], path.display().to_string());
    let grade = r["grade"].as_u64().expect("grade");
    assert!(grade <= 4);
    let probs: Vec<f64> = r["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 5);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    let best = probs.iter().cloned().fold(0.0, f64::max);
    assert!((r["confidence"].as_f64().unwrap() - best).abs() < 1e-6);
    assert_eq!(probs[grade as usize], best);
    assert_eq!(r["oa"].as_bool().unwrap(), grade >= 2);
    let grid = r["cam_grid"].as_array().unwrap();
    assert_eq!(grid.len(), 7);
    assert!(grid.iter().all(|row| row.as_array().unwrap().len() == 7));
    for key in ["decode", "preprocess", "inference", "cam", "overlay"] {
        assert!(
            r["timings_ms"][key].as_f64().unwrap() >= 0.0,
            "timing {key}"
        );
    }
    assert!(r["refer"].is_boolean() && r["warnings"].is_array());
    assert!(r["notice"].as_str().unwrap().contains("not a diagnosis"));
}

#[test]
fn analyze_writes_json_and_overlay_with_out() {
    let dir = temp_dir();
    let input = dir.path().join("a.png");
    write_png(&input, &synthetic_knee(224, 224, 2));
    let results = dir.path().join("results");
    let out = run(&[
        "analyze",
        "--out",
        results.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("KL"),
        "human summary: {}",
        stdout(&out)
    );
    let record: Value = serde_json::from_slice(&fs::read(results.join("a.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "ok");
    let overlay = image::open(results.join("a.overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (224, 224));
}

/// Every kind of bad input: a clear one-line reason naming the file, exit code 2, file untouched.
#[test]
fn bad_inputs_are_rejected_clearly_and_left_untouched() {
    let dir = temp_dir();
    let d = dir.path();
    let mut png = Vec::new();
    synthetic_knee(64, 64, 3)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut jpeg = Vec::new();
    synthetic_knee(64, 64, 4)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // A PNG whose header claims 60000×60000: must be refused before any large allocation.
    let mut huge = png[..33].to_vec();
    huge[16..20].copy_from_slice(&60000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.png", vec![]),
        ("truncated.png", png[..png.len() / 2].to_vec()),
        ("truncated.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("notes.png", b"this is a text file, not an X-ray\n".to_vec()),
        ("huge.png", huge),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &cases {
        let p = d.join(name);
        fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let folder = d.join("a-folder.png");
    fs::create_dir(&folder).unwrap();
    paths.push(folder);
    paths.push(d.join("missing.png"));
    // A pipe (nothing ever writes to it): refused at once, not waited on.
    let pipe = d.join("pipe.png");
    let made = std::process::Command::new("mkfifo").arg(&pipe).status();
    assert!(made.unwrap().success(), "mkfifo");
    paths.push(pipe);

    for path in &paths {
        let before = path.is_file().then(|| sha256(path));
        let (out, json) = analyze_json(&[path]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: stderr {}",
            path.display(),
            stderr(&out)
        );
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("rejected"))
            .unwrap_or_else(|| panic!("no reason for {path:?}: {err}"));
        assert!(
            line.starts_with(&path.display().to_string()),
            "names the file: {line}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(json[0]["status"], "rejected");
        assert!(json[0]["reason"].as_str().unwrap().len() > 10);
        assert_eq!(
            before,
            path.is_file().then(|| sha256(path)),
            "input changed: {path:?}"
        );
    }
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = temp_dir();
    let good = dir.path().join("good.png");
    write_png(&good, &synthetic_knee(256, 256, 5));
    let bad = dir.path().join("bad.png");
    fs::write(&bad, b"garbage").unwrap();
    let (out, json) = analyze_json(&[&bad, &good]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json[0]["status"], "rejected");
    assert_eq!(json[1]["status"], "ok");
}

#[test]
fn preprocess_writes_the_network_input() {
    let dir = temp_dir();
    let input = dir.path().join("in.png");
    let img = synthetic_knee(500, 400, 6);
    write_png(&input, &img);
    let output = dir.path().join("out.png");
    let out = run(&[
        "preprocess",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = image::open(&output).unwrap().to_luma8();
    assert_eq!(written, kneescreen::pipeline::preprocess::preprocess(&img));
}

#[test]
fn eval_reports_metrics_as_json() {
    // Ten knees through the real model take minutes under the emulator; the metrics and the ROC
    // are the same arithmetic on every architecture, and the model's outputs there are checked
    // by the model tests.
    if emulated("eval over ten knees") {
        return;
    }
    let dir = temp_dir();
    for grade in 0..5u32 {
        let sub = dir.path().join(grade.to_string());
        fs::create_dir(&sub).unwrap();
        for i in 0..2 {
            write_png(
                &sub.join(format!("{i}.png")),
                &synthetic_knee(224, 224, grade * 10 + i),
            );
        }
    }
    let roc_json = dir.path().join("roc.json");
    let out = run(&[
        "eval",
        "--json",
        "--out",
        dir.path().to_str().unwrap(),
        "--roc-json",
        roc_json.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The OA call: its ROC over the set (6 OA knees, 4 not), the area the report gives is the
    // area of that ROC, and the operating point is the shipped card's.
    let roc: kneescreen::pipeline::screening::Roc =
        serde_json::from_slice(&fs::read(&roc_json).unwrap()).unwrap();
    assert_eq!((roc.positives, roc.negatives), (6, 4));
    let s = &m["oa_screening"];
    let auc = s["auc"].as_f64().unwrap();
    assert!((auc - kneescreen::pipeline::screening::auc(&roc)).abs() < 1e-9);
    let card_point = kneescreen::pipeline::model::Classifier::load(
        &kneescreen::pipeline::model::default_models_dir(),
        "int8",
    )
    .unwrap()
    .oa_call()
    .cloned()
    .expect("the shipped card has an operating point");
    assert_eq!(
        s["operating_point"]["threshold"].as_f64().unwrap() as f32,
        card_point.threshold
    );
    let png = image::open(dir.path().join("roc.png")).expect("roc.png is a picture");
    assert!(png.width() >= 200 && png.height() >= 200);
    let text = run(&["eval", dir.path().to_str().unwrap()]);
    assert!(stdout(&text).contains("ROC AUC"), "{}", stdout(&text));
    assert_eq!(m["n"], 10);
    for key in [
        "accuracy",
        "qwk",
        "mae",
        "binary_accuracy",
        "sensitivity",
        "specificity",
    ] {
        assert!(m[key].is_number(), "{key}");
    }
    let confusion = m["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10);
    assert_eq!(m["per_class"].as_array().unwrap().len(), 5);
    assert!(dir.path().join("confusion.png").is_file());
}

#[test]
fn unknown_model_is_an_internal_failure_with_exit_1() {
    let dir = temp_dir();
    let input = dir.path().join("k.png");
    write_png(&input, &synthetic_knee(224, 224, 7));
    let out = run(&["analyze", "--model", "int4", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("int4"), "{}", stderr(&out));
}

/// `bench` times every model the card lists, stage by stage, and says how many network passes an
/// image costs (2 when the card averages the image and its mirror).
#[test]
fn bench_reports_every_model_and_its_passes() {
    let out = run(&["bench", "--json", "--runs", "1"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let card =
        kneescreen::pipeline::model::Card::load(&kneescreen::pipeline::model::default_models_dir())
            .unwrap();
    let models = report["models"].as_array().unwrap();
    let variants = kneescreen::pipeline::model::runnable_variants(&card);
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, variants);
    assert_eq!(
        report["cpu_has_fp16"],
        kneescreen::pipeline::model::cpu_has_fp16()
    );
    for m in models {
        let passes = if card.flip_average { 2 } else { 1 };
        assert_eq!(m["passes"], passes, "{m}");
        assert!(m["agreement"].is_null(), "compared only when asked: {m}");
        let kernels = m["kernels"].as_object().unwrap();
        assert!(!kernels.is_empty(), "the kernels tract selected: {m}");
        for stage in ["decode", "preprocess", "inference", "cam", "overlay"] {
            assert!(
                m["stages_ms"][stage].as_f64().unwrap() > 0.0,
                "{stage}: {m}"
            );
        }
    }
}

#[test]
fn outputs_never_replace_an_input() {
    let dir = temp_dir();
    let input = dir.path().join("knee.png");
    write_png(&input, &synthetic_knee(224, 224, 9));
    let original = fs::read(&input).unwrap();
    // `analyze --out` into the inputs' folder: knee.png's results could replace knee.input.png.
    let other = dir.path().join("knee.input.png");
    write_png(&other, &synthetic_knee(224, 224, 10));
    let before_other = fs::read(&other).unwrap();
    let refused = |cmd: &mut std::process::Command, says: &str| {
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    };
    refused(
        kneescreen()
            .args(["analyze", "--out"])
            .arg(dir.path())
            .args([&input, &other]),
        "another folder",
    );
    // The same with bare file names, from inside that folder.
    refused(
        kneescreen().current_dir(dir.path()).args([
            "analyze",
            "--out",
            ".",
            "knee.png",
            "knee.input.png",
        ]),
        "another folder",
    );
    refused(
        kneescreen()
            .arg("preprocess")
            .args([&input, &dir.path().join(".").join("knee.png")]),
        "is the input",
    );
    assert_eq!(fs::read(&input).unwrap(), original);
    assert_eq!(fs::read(&other).unwrap(), before_other);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "nothing written"
    );
}

/// `sign-models --new-key` into a folder that holds no card: a clear error, and no key is left
/// behind whose verifying key was never printed.
#[test]
fn sign_models_refuses_a_folder_without_a_card_before_making_a_key() {
    let dir = temp_dir();
    let key = dir.path().join("release-key.pk8");
    let missing = dir.path().join("no-models-here");
    let out = kneescreen()
        .args(["sign-models", "--new-key", "--key"])
        .arg(&key)
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("card.json not found: is") && stderr(&out).contains("no-models-here"),
        "{}",
        stderr(&out)
    );
    assert!(!key.exists(), "no key made");
}
