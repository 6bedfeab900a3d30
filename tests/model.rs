//! The shipped models under tract against onnxruntime's outputs (tests/fixtures/model, made by
//! scripts/make_model_fixtures.py), per-channel quantization, Grad-CAM against finite
//! differences, and refusal of a damaged install. Runs unchanged under qemu-aarch64 in CI.

use crate::support::util;

use std::fs;
use std::path::Path;

use image::GrayImage;

use kneescreen::pipeline::cam;
use kneescreen::pipeline::decode::{decode_gray, Limits};
use kneescreen::pipeline::model::{self, default_models_dir, Card, Classifier, ModelError};
use kneescreen::pipeline::preprocess;
use serde_json::Value;
use tract_onnx::prelude::*;

/// Probability tolerance against onnxruntime. fp32: tract and onnxruntime agree to ~1e-5 on logits.
/// int8: the two runtimes round requantisation differently (and aarch64 sums in another order),
/// which moves the feature map by a few quantisation steps.
const FP32_TOLERANCE: f32 = 2e-3;
const INT8_TOLERANCE: f32 = 0.06;

fn expected() -> Value {
    let text =
        std::fs::read_to_string(util::fixture("model/expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn fixtures_belong_to_the_shipped_models() {
    let card = Card::load(&default_models_dir()).expect("card");
    let e = expected();
    for (variant, m) in &card.models {
        assert_eq!(
            e["model_sha256"][variant].as_str(),
            Some(m.sha256.as_str()),
            "tests/fixtures/model is for other model files: rerun scripts/make_model_fixtures.py"
        );
    }
}

/// Every fixture image's name, expected outputs and network input image.
fn fixture_inputs() -> Vec<(String, Value, GrayImage)> {
    let e = expected();
    let images = e["images"].as_object().unwrap();
    images
        .iter()
        .map(|(name, want)| {
            let bytes = std::fs::read(util::fixture(&format!("model/{name}"))).unwrap();
            let gray = decode_gray(&bytes, &Limits::default()).unwrap();
            (name.clone(), want.clone(), preprocess::preprocess(&gray))
        })
        .collect()
}

/// The fixtures a model is checked on: every one natively, the first two under the emulator,
/// where a pass takes seconds (the same kernels run on each).
fn comparison_inputs() -> Vec<(String, Value, GrayImage)> {
    let mut inputs = fixture_inputs();
    if util::under_emulator() {
        inputs.truncate(2);
    }
    inputs
}

/// Every variant the card lists (also those made for another CPU: they load anywhere).
fn card_variants() -> Vec<String> {
    let card = Card::load(&default_models_dir()).expect("card");
    card.models.keys().cloned().collect()
}

/// Runs `check(classifier, network input image, expected outputs of this variant, tolerance)`
/// for every shipped variant and every fixture image (the first two under the emulator).
fn for_each_fixture(mut check: impl FnMut(&Classifier, &GrayImage, &Value, f32, &str)) {
    let dir = default_models_dir();
    let inputs = comparison_inputs();
    for variant in card_variants() {
        let variant = variant.as_str();
        let tolerance = if variant == "fp32" {
            FP32_TOLERANCE
        } else {
            INT8_TOLERANCE
        };
        let classifier = Classifier::load(&dir, variant).expect("model loads");
        for (name, want, input) in &inputs {
            let what = format!("{variant} {name}");
            check(&classifier, input, &want[variant], tolerance, &what);
        }
    }
}

/// Same grade and probabilities within `tolerance` as onnxruntime's `want`.
fn assert_matches(
    top: (usize, f32),
    probabilities: &[f32],
    want: &Value,
    tolerance: f32,
    what: &str,
) {
    assert_eq!(
        top.0 as u64,
        want["grade"].as_u64().unwrap(),
        "{what}: grade"
    );
    for (got, exp) in probabilities
        .iter()
        .zip(want["probabilities"].as_array().unwrap())
    {
        let exp = exp.as_f64().unwrap() as f32;
        assert!(
            (got - exp).abs() <= tolerance,
            "{what}: probability {got} vs {exp}"
        );
    }
}

#[test]
fn tract_matches_onnxruntime_on_fixture_images() {
    for_each_fixture(|classifier, input, want, tolerance, what| {
        let out = classifier
            .infer(&preprocess::to_network_input(input))
            .unwrap();
        assert_matches(out.top(), &out.probabilities, want, tolerance, what);
    });
}

/// What the appliance reports: with the card's `flip_average`, the mean of the logits of the
/// image and of its mirror, against onnxruntime computing the same.
#[test]
fn classify_averages_the_mirror_like_onnxruntime() {
    assert!(
        Card::load(&default_models_dir()).unwrap().flip_average,
        "the shipped card grades from the image and its mirror"
    );
    for_each_fixture(|classifier, input, want, tolerance, what| {
        let out = classifier.classify(input).unwrap();
        assert!(out.mirrored.is_some());
        assert_matches(
            out.top(),
            &out.probabilities,
            &want["flip_average"],
            tolerance,
            what,
        );
    });
}

#[test]
fn int8_variants_and_fp32_agree_on_fixture_grades() {
    let e = expected();
    for (name, want) in e["images"].as_object().unwrap() {
        for variant in card_variants().iter().filter(|v| *v != "fp32") {
            let what = format!("{variant} {name}");
            assert_eq!(want["fp32"]["grade"], want[variant]["grade"], "{what}");
            assert_eq!(
                want["fp32"]["flip_average"]["grade"], want[variant]["flip_average"]["grade"],
                "{what}"
            );
        }
    }
}

/// tract must apply a different scale to each output channel of a per-axis DequantizeLinear.
#[test]
fn per_channel_dequantization_uses_every_channels_scale() {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(util::fixture("model/per_channel.json")).unwrap(),
    )
    .unwrap();
    let floats = |k: &str| -> Vec<f32> {
        spec[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let dims = |k: &str| -> Vec<usize> {
        spec[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let model = tract_onnx::onnx()
        .model_for_path(util::fixture("model/per_channel.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::ArrayD::from_shape_vec(dims("x_shape"), floats("x")).unwrap();
    let y = model.run(tvec!(Tensor::from(x).into())).unwrap();
    let got: Vec<f32> = y[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let want = floats("y");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
    }
}

/// Grad-CAM's channel weights equal the gradient of the logit with respect to the feature map,
/// measured independently by central differences through the model's own head.
#[test]
fn grad_cam_weights_match_finite_differences_of_the_real_head() {
    let classifier = Classifier::load(&default_models_dir(), "fp32").unwrap();
    let gray = util::synthetic_knee(256, 256, 11);
    let out = classifier
        .infer(&preprocess::to_network_input(&preprocess::preprocess(
            &gray,
        )))
        .unwrap();
    let fmap = out.feature_map().unwrap();
    let pooled = cam::global_average_pool(&fmap);
    let cells = (fmap.height() * fmap.width()) as f64;
    let logit = |g: &[f32], class: usize| classifier.head().logits(g).unwrap()[class] as f64;
    for class in 0..5 {
        let alpha = cam::channel_weights(&fmap, classifier.head(), class).unwrap();
        for k in (0..pooled.len()).step_by(37) {
            let h = 1e-2_f32;
            let mut up = pooled.clone();
            up[k] += h;
            let mut down = pooled.clone();
            down[k] -= h;
            let d = (logit(&up, class) - logit(&down, class)) / (2.0 * h as f64);
            // ∂z/∂A_ijk = (1/HW) ∂z/∂g_k
            assert!(
                (alpha[k] as f64 - d / cells).abs() < 1e-4,
                "class {class} channel {k}: {} vs {}",
                alpha[k],
                d / cells
            );
        }
    }
}

#[test]
fn a_model_file_that_does_not_match_its_card_is_refused() {
    let dir =
        util::models_copy(|card| card["models"]["fp32"]["sha256"] = Value::from("0".repeat(64)));
    match Classifier::load(dir.path(), "fp32") {
        Err(ModelError::HashMismatch { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a mismatching model file was accepted"),
    }
    assert!(matches!(
        Classifier::load(Path::new("/nonexistent"), "int8"),
        Err(ModelError::CardUnreadable { .. })
    ));
}

/// The models folder is loaded only with a valid signature of a key compiled in: unsigned,
/// changed after signing, or signed by someone else, it is refused at start with the reason
/// (by the library, `analyze` and `run`); records name who signed the model.
#[test]
fn only_a_signed_models_folder_is_loaded_and_records_name_the_signer() {
    let shipped = Classifier::load(&default_models_dir(), "fp32").unwrap();
    assert!(
        shipped
            .signer
            .as_deref()
            .unwrap()
            .starts_with("kneescreen project release key (key 861dcade"),
        "{:?}",
        shipped.signer
    );
    let copy = util::models_copy(|_| {});
    let card = copy.path().join("card.json");
    let test_signed = Classifier::load(copy.path(), "fp32").unwrap();
    assert!(test_signed
        .signer
        .unwrap()
        .starts_with("kneescreen test key"));

    let refused = |why: &str| {
        let e = Classifier::load(copy.path(), "fp32")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(why), "{why}: {e}");
        let img = util::temp_dir();
        let png = img.path().join("k.png");
        util::write_png(&png, &util::synthetic_knee(224, 224, 3));
        let dir = copy.path().to_str().unwrap();
        let out = util::run(&["analyze", "--models-dir", dir, png.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0));
        assert!(util::stderr(&out).contains(why), "{}", util::stderr(&out));
        let inbox = img.path().join("in");
        fs::create_dir_all(&inbox).unwrap();
        let results = img.path().join("r");
        let out = util::run(&[
            "run",
            "--models-dir",
            dir,
            "--panel",
            "virtual",
            "--exit-when-idle",
            "--inbox",
            inbox.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ]);
        assert_ne!(out.status.code(), Some(0));
        assert!(util::stderr(&out).contains(why), "{}", util::stderr(&out));
    };
    // Changed after signing (the card's threshold edited by hand).
    let text = fs::read_to_string(&card).unwrap();
    fs::write(
        &card,
        text.replacen(
            "\"refer_below_confidence\":",
            "\"refer_below_confidence\": 0.01, \"x\":",
            1,
        ),
    )
    .unwrap();
    refused("does not match its signature");
    // Signed by a key this binary does not know.
    let stranger_dir = util::temp_dir();
    let stranger = kneescreen::pipeline::signature::SigningKey::create(
        &stranger_dir.path().join("k.pk8"),
        "someone",
    )
    .unwrap();
    stranger.sign_file(&card).unwrap();
    refused("key this device does not trust");
    // Not signed at all.
    fs::remove_file(copy.path().join("card.json.sig")).unwrap();
    refused("is not signed");
}

/// Probability tolerance of the half-precision variant against onnxruntime's fp32: f16 keeps
/// about three significant digits through some fifty layers.
const FP16_TOLERANCE: f32 = 0.03;

/// The half-precision variant: refused with its reason on a CPU without half-precision
/// arithmetic; where the CPU has it (CI runs this under qemu as a Cortex-A76), tract runs its
/// f16 kernels and every fixture gets fp32's grade.
#[test]
fn fp16_runs_where_the_cpu_has_half_precision_and_grades_as_fp32() {
    let dir = default_models_dir();
    let card = Card::load(&dir).unwrap();
    if !model::cpu_has_fp16() {
        let e = Classifier::load(&dir, model::FP16).err().expect("refused");
        assert!(matches!(e, ModelError::NoHalfPrecision), "{e}");
        assert!(e.to_string().contains("half-precision"), "{e}");
        assert!(!model::runnable_variants(&card).contains(&model::FP16.to_string()));
        eprintln!(
            "fp16: this CPU has no half-precision arithmetic, so only the refusal is checked \
             here (CI checks the grades under qemu as a Cortex-A76)"
        );
        return;
    }
    assert!(model::runnable_variants(&card).contains(&model::FP16.to_string()));
    let half = Classifier::load(&dir, model::FP16).expect("fp16 loads");
    assert!(half.is_half_precision());
    let kernels = half.kernels();
    eprintln!("fp16 kernels: {kernels:?}");
    assert!(kernels.keys().any(|k| k.contains("f16")), "{kernels:?}");
    for (name, want, input) in fixture_inputs() {
        let out = half.classify(&input).unwrap();
        let what = format!("fp16 {name}");
        let want = &want["fp32"]["flip_average"];
        assert_matches(out.top(), &out.probabilities, want, FP16_TOLERANCE, &what);
    }
}

/// The matrix kernels tract selects for the shipped models on this CPU (`kneescreen bench`
/// prints them too): its own for this architecture, not a portable fallback.
#[test]
fn tract_runs_this_architectures_kernels() {
    let dir = default_models_dir();
    for variant in card_variants() {
        let kernels = Classifier::load(&dir, &variant).unwrap().kernels();
        eprintln!("{variant} kernels: {kernels:?}");
        let prefix = if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "avx"
        };
        assert!(
            kernels
                .keys()
                .all(|k| k.contains(prefix) || k.contains("fma")),
            "{variant}: {kernels:?}"
        );
    }
}

/// The variant made for ARM runs its quantized convolutions on tract's integer kernels (SDOT
/// where the CPU has dot-product instructions, as a Pi 5's Cortex-A76 does; CI runs this under
/// qemu as a Cortex-A72 and as an A76), and is offered only on aarch64.
#[test]
fn int8_for_arm_runs_integer_kernels_and_is_offered_on_arm_only() {
    let dir = default_models_dir();
    let card = Card::load(&dir).unwrap();
    let arm: Vec<&String> = card
        .models
        .iter()
        .filter(|(_, m)| m.arch.as_deref() == Some("aarch64"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(arm, ["int8-arm"], "the card's variants made for ARM");
    let offered = model::runnable_variants(&card).contains(arm[0]);
    assert_eq!(offered, cfg!(target_arch = "aarch64"));
    let kernels = Classifier::load(&dir, arm[0]).unwrap().kernels();
    eprintln!("int8-arm kernels: {kernels:?}");
    let integer: usize = kernels
        .iter()
        .filter(|(k, _)| k.contains("i32"))
        .map(|(_, uses)| uses)
        .sum();
    assert!(
        integer >= 20,
        "most convolutions on integer kernels: {kernels:?}"
    );
    #[cfg(target_arch = "aarch64")]
    {
        let sdot = std::arch::is_aarch64_feature_detected!("dotprod");
        let dot = kernels
            .keys()
            .any(|k| k.contains("i32") && k.contains("dot"));
        assert_eq!(
            dot, sdot,
            "SDOT kernels exactly where the CPU has them: {kernels:?}"
        );
    }
}

/// With threads beyond one per view, each pass's matrix products are split over a pool
/// (`multithread-mm`): the grades and logits are those of one thread.
#[test]
fn threads_split_the_work_without_changing_the_result() {
    let dir = default_models_dir();
    let mut one = Classifier::load(&dir, "fp32").unwrap();
    one.set_threads(1);
    let mut four = Classifier::load(&dir, "fp32").unwrap();
    four.set_threads(4);
    assert_eq!((one.pass_threads(), four.pass_threads()), (1, 2));
    for (name, _, input) in comparison_inputs() {
        let (a, b) = (
            one.classify(&input).unwrap(),
            four.classify(&input).unwrap(),
        );
        assert!(b.mirrored.is_some());
        for (x, y) in a.logits.iter().zip(&b.logits) {
            assert!(
                (x - y).abs() < 1e-4,
                "{name}: {:?} vs {:?}",
                a.logits,
                b.logits
            );
        }
    }
}

/// The plan runs its convolutions channels-last (faster); the network is the same: every
/// fixture gives the feature map and logits of the file's own channels-first layout.
#[test]
fn channels_last_plan_computes_what_the_exported_layout_does() {
    use kneescreen::pipeline::model::ConvLayout;
    let dir = default_models_dir();
    let inputs = comparison_inputs();
    let largest = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let gap = |x: &[f32], y: &[f32]| x.iter().zip(y).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    for variant in card_variants() {
        let last = Classifier::load(&dir, &variant).unwrap();
        let first = Classifier::load_with_layout(&dir, &variant, ConvLayout::AsExported).unwrap();
        for (name, _, input) in &inputs {
            let (a, b) = (
                last.classify(input).unwrap(),
                first.classify(input).unwrap(),
            );
            let what = format!("{variant} {name}");
            assert_eq!(a.image.features.len(), b.image.features.len(), "{what}");
            let features = gap(&a.image.features, &b.image.features);
            assert!(
                features <= 1e-4 * largest(&b.image.features),
                "{what}: feature maps differ by {features}"
            );
            let logits = gap(&a.logits, &b.logits);
            assert!(logits < 1e-4, "{what}: {:?} vs {:?}", a.logits, b.logits);
        }
    }
}
