//! The simulated-site experiment for site calibration.
//!
//! `cargo run --release --example site_calibration -- SIM_DIR [--model int8] [--splits 10]
//! [--cache FILE]` (`--cache`: keep the extracted features in FILE and read them from it next
//! time; keep it outside the repository, it is derived from the images)
//!
//! SIM_DIR is what `scripts/simulated_site.py write` makes: `selection/<grade>/…` (the simulated
//! selection slice of train) and `val/<grade>/…` (simulated val). Every image's features are
//! extracted once through the appliance's own analysis path (`calibration::collect`). Then:
//!
//! 1. the L2 penalty: on the simulated selection slice, for each λ of a grid, random
//!    patient-disjoint splits calibrate on 100 knees (in the slice's own grade mix) and are
//!    measured on the rest; the λ with the best mean accuracy + QWK is reported (it is the one
//!    `calibration::LAMBDA` should hold);
//! 2. the report: on simulated val, for 100 and 200 calibration knees, `--splits` random
//!    patient-disjoint splits run `calibration::calibrate` exactly as `kneescreen calibrate`
//!    does, then both heads are measured on the rest at their own operating points. Mean ± sd
//!    over the splits, how often the site head would have been activated, and "chosen": the
//!    head the appliance would then grade with (the site head where activated, else shipped).

use std::path::Path;

use kneescreen::calibration::{self, collect, Example};
use kneescreen::pipeline::decode::limits::Limits;
use kneescreen::pipeline::model::{default_models_dir, Classifier, KneeFeatures};
use kneescreen::pipeline::screening::{self, DEFAULT_TARGET_SENSITIVITY};
use kneescreen::pipeline::site_head::CvFigures;
use kneescreen::tools::synthetic::XorShift32;

const LAMBDAS: [f64; 9] = [0.1, 0.3, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sim = Path::new(args.first().expect("usage: site_calibration SIM_DIR"));
    let model = value("--model").unwrap_or_else(|| "int8".into());
    let splits: u32 = value("--splits").map_or(10, |s| s.parse().expect("--splits N"));
    let target = DEFAULT_TARGET_SENSITIVITY;

    let mut classifier = Classifier::load(&default_models_dir(), &model)?;
    classifier.without_site_head(target)?;
    let features = |part: &str| -> anyhow::Result<Vec<Example>> {
        let found = collect::from_dir(&sim.join(part), &classifier, &Limits::default(), |_, _| {})?;
        for r in &found.refused {
            eprintln!("{}: not used: {}", r.path, r.reason);
        }
        eprintln!("{part}: {} knees", found.examples.len());
        Ok(found.examples)
    };
    let cache = value("--cache").map(std::path::PathBuf::from);
    let (selection, val) = match cache.as_deref().filter(|c| c.is_file()) {
        Some(c) => {
            let parts: [Vec<Cached>; 2] = serde_json::from_slice(&std::fs::read(c)?)?;
            let [s, v] = parts.map(|p| p.into_iter().map(Example::from).collect::<Vec<_>>());
            (s, v)
        }
        None => (features("selection")?, features("val")?),
    };
    if let Some(c) = cache.as_deref().filter(|c| !c.is_file()) {
        let parts = [&selection, &val].map(|p| p.iter().map(Cached::from).collect::<Vec<_>>());
        std::fs::write(c, serde_json::to_vec(&parts)?)?;
    }

    println!(
        "## λ on the simulated selection slice (calibrate on 100, measure the rest; 5 splits)"
    );
    let mut best = (f64::MIN, 0.0);
    for lambda in LAMBDAS {
        let runs: Vec<(CvFigures, CvFigures, bool)> = (1..=5)
            .map(|seed| run(&selection, 100, seed, lambda, &classifier, target))
            .collect::<anyhow::Result<_>>()?;
        let site: Vec<&CvFigures> = runs.iter().map(|r| &r.1).collect();
        let score = mean(&site, |f| f.accuracy) + mean(&site, |f| f.qwk);
        println!(
            "λ {lambda:<6} site head on the rest: accuracy {:.3}  QWK {:.3}  OA accuracy {:.3}",
            mean(&site, |f| f.accuracy),
            mean(&site, |f| f.qwk),
            mean(&site, |f| f.oa_accuracy)
        );
        if score > best.0 {
            best = (score, lambda);
        }
    }
    let lambda = best.1;
    println!(
        "chosen λ = {lambda} (calibration::LAMBDA = {})\n",
        calibration::LAMBDA
    );

    println!("## simulated val ({model}, λ {lambda}, {splits} patient-disjoint splits, OA call at sensitivity {target})");
    for n in [100, 200, 400] {
        let runs: Vec<(CvFigures, CvFigures, bool)> = (1..=splits)
            .map(|seed| run(&val, n, 100 + seed, lambda, &classifier, target))
            .collect::<anyhow::Result<_>>()?;
        let shipped: Vec<&CvFigures> = runs.iter().map(|r| &r.0).collect();
        let site: Vec<&CvFigures> = runs.iter().map(|r| &r.1).collect();
        // What the appliance grades with: the site head where the rule activated it.
        let chosen: Vec<&CvFigures> = runs.iter().map(|r| if r.2 { &r.1 } else { &r.0 }).collect();
        let activated = runs.iter().filter(|r| r.2).count();
        println!(
            "calibrate on {n}, measure on the other {} knees:",
            val.len() - n
        );
        println!("  head      accuracy        QWK             OA accuracy     OA sensitivity  OA specificity");
        for (name, f) in [("shipped", &shipped), ("site", &site), ("chosen", &chosen)] {
            let cell = |g: fn(&CvFigures) -> f64| format!("{:.3} ± {:.3}", mean(f, g), sd(f, g));
            println!(
                "  {name:<8}  {}   {}   {}   {}   {}",
                cell(|x| x.accuracy),
                cell(|x| x.qwk),
                cell(|x| x.oa_accuracy),
                cell(|x| x.oa_sensitivity),
                cell(|x| x.oa_specificity)
            );
        }
        println!("  site head activated by the cross-validation rule in {activated} of {splits} splits\n");
    }
    Ok(())
}

/// Calibrates on `n` knees drawn patient by patient (seeded), measures both heads on the rest:
/// (shipped, site, activated).
fn run(
    all: &[Example],
    n: usize,
    seed: u32,
    lambda: f64,
    classifier: &Classifier,
    target: f64,
) -> anyhow::Result<(CvFigures, CvFigures, bool)> {
    let patient = |e: &Example| {
        let file = e.name.rsplit('/').next().unwrap_or(&e.name);
        file.chars().take(7).collect::<String>()
    };
    let mut patients: Vec<String> = all.iter().map(patient).collect();
    patients.sort();
    patients.dedup();
    let mut rng = XorShift32::new(seed.wrapping_mul(2_654_435_761).max(1));
    for i in (1..patients.len()).rev() {
        patients.swap(i, rng.next_u32() as usize % (i + 1));
    }
    let (mut calib, mut rest) = (Vec::new(), Vec::new());
    let mut taken = std::collections::HashSet::new();
    for p in &patients {
        let count = all.iter().filter(|e| &patient(e) == p).count();
        if calib.len() + count <= n || calib.is_empty() {
            taken.insert(p.clone());
            calib.extend(all.iter().filter(|e| &patient(e) == p).cloned());
        }
        if calib.len() >= n {
            break;
        }
    }
    rest.extend(all.iter().filter(|e| !taken.contains(&patient(e))).cloned());

    let c = calibration::calibrate(
        &calib,
        classifier,
        "experiment",
        target,
        lambda,
        "experiment",
    )?;
    let grades: Vec<u8> = rest.iter().map(|e| e.grade).collect();
    let site_probs: Vec<Vec<f32>> = rest
        .iter()
        .map(|e| calibration::linear_probabilities(&c.head.w, &c.head.b, &e.features.mean()))
        .collect();
    let site_threshold = screening::operating_point(&c.head.oa_roc, target)?.threshold;
    let site = calibration::figures(&site_probs, &grades, Some(site_threshold))?;
    let shipped_probs: Vec<Vec<f32>> = rest
        .iter()
        .map(|e| calibration::shipped_probabilities(classifier, &e.features))
        .collect::<Result<_, _>>()?;
    let shipped_threshold = classifier.shipped_oa_call(target)?.map(|p| p.threshold);
    let shipped = calibration::figures(&shipped_probs, &grades, shipped_threshold)?;
    Ok((shipped, site, c.better))
}

fn mean(f: &[&CvFigures], g: fn(&CvFigures) -> f64) -> f64 {
    f.iter().map(|x| g(x)).sum::<f64>() / f.len().max(1) as f64
}

fn sd(f: &[&CvFigures], g: fn(&CvFigures) -> f64) -> f64 {
    let m = mean(f, g);
    (f.iter().map(|x| (g(x) - m).powi(2)).sum::<f64>() / (f.len().max(2) - 1) as f64).sqrt()
}

/// An extracted example as kept in the `--cache` file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    name: String,
    grade: u8,
    image: Vec<f32>,
    mirror: Option<Vec<f32>>,
}

impl From<&Example> for Cached {
    fn from(e: &Example) -> Cached {
        Cached {
            name: e.name.clone(),
            grade: e.grade,
            image: e.features.image.clone(),
            mirror: e.features.mirror.clone(),
        }
    }
}

impl From<Cached> for Example {
    fn from(c: Cached) -> Example {
        Example {
            name: c.name,
            grade: c.grade,
            features: KneeFeatures {
                image: c.image,
                mirror: c.mirror,
            },
        }
    }
}
