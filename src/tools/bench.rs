//! The `bench` command: median time of each stage (decode, localise, preprocess, inference, Grad-CAM,
//! overlay) and of model load + optimise, for every model the card lists. Run it on the device:
//! which model format is fastest differs between x86 and ARM.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::calibration;
use crate::pipeline;
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::digest::sha256_hex;
use crate::pipeline::localise;
use crate::pipeline::model::{Card, Classifier, KneeFeatures};
use crate::pipeline::preprocess::INPUT_SIZE;
use crate::tools::synthetic;

#[derive(Debug, Serialize)]
pub struct StageMedians {
    pub decode: f64,
    /// Finding the knee joints in a 2500×2000 radiograph (not in the input below, which is one
    /// joint crop).
    pub localize: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub cam: f64,
    pub overlay: f64,
}

#[derive(Debug, Serialize)]
pub struct ModelBench {
    pub name: String,
    pub file: String,
    pub load_ms: f64,
    /// Network passes per image: 2 when the card averages the image and its mirror.
    pub passes: usize,
    /// Threads one image's passes ran on (the image and its mirror at once with two or more).
    pub threads: usize,
    /// One network pass alone.
    pub pass_ms: f64,
    /// One whole analysis (decode to record), wall time.
    pub image_ms: f64,
    pub stages_ms: StageMedians,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub runs: usize,
    /// Fitting a site head to 400 knees' features (seeded synthetic ones): the whole
    /// `calibrate` after feature extraction, i.e. 5-fold cross-validation and the final fit, on
    /// one thread; median of up to 3 runs.
    pub site_head_fit_ms: f64,
    /// Description of the synthetic input that is decoded each run.
    pub input: String,
    pub models: Vec<ModelBench>,
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = format!("median of {} runs, input {}\n", self.runs, self.input);
        s += "model   load ms    pass   image  passes threads  decode  localize  preproc  inference     cam  overlay  (ms)\n";
        for m in &self.models {
            let t = &m.stages_ms;
            s += &format!(
                "{:<6} {:>8.1} {:>7.2} {:>7.2} {:>7} {:>7} {:>7.2} {:>9.2} {:>8.2} {:>10.2} {:>7.2} {:>8.2}\n",
                m.name,
                m.load_ms,
                m.pass_ms,
                m.image_ms,
                m.passes,
                m.threads,
                t.decode,
                t.localize,
                t.preprocess,
                t.inference,
                t.cam,
                t.overlay
            );
        }
        s += &format!(
            "site head fit, 400 knees (cross-validation + final fit): {:.0} ms\n",
            self.site_head_fit_ms
        );
        s
    }
}

/// `n` knees' worth of seeded synthetic features: a grade-dependent signal in a few channels
/// under noise, so the fit has real work to do.
pub fn synthetic_examples(n: usize, inputs: usize) -> Vec<calibration::Example> {
    let mut rng = synthetic::XorShift32::new(7);
    let mut noise = move || (rng.next_u32() % 10_000) as f32 / 10_000.0;
    (0..n)
        .map(|i| {
            let grade = (i % 5) as u8;
            let image: Vec<f32> = (0..inputs)
                .map(|c| {
                    noise()
                        + if c % 50 == usize::from(grade) {
                            0.6
                        } else {
                            0.0
                        }
                })
                .collect();
            calibration::Example {
                name: format!("{grade}/synthetic{i}.png"),
                grade,
                features: KneeFeatures {
                    mirror: Some(image.iter().map(|v| v * 0.98).collect()),
                    image,
                },
            }
        })
        .collect()
}

/// A drawn knee joint crop (`synthetic::synthetic_knee`), `size` pixels square, as PNG bytes,
/// so the benchmark needs no data set.
pub fn synthetic_png(size: u32) -> Vec<u8> {
    let img = synthetic::synthetic_knee(size, size, 1);
    let mut out = std::io::Cursor::new(Vec::new());
    // Writing into memory cannot fail for a valid image.
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("in-memory PNG encoding");
    out.into_inner()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64() * 1e3)
}

/// Benchmarks every model listed in the card in `dir`; `threads` overrides the classifier's
/// default (every core).
pub fn run(dir: &Path, runs: usize, threads: Option<usize>) -> anyhow::Result<Report> {
    let runs = runs.max(1);
    let card = Card::load(dir)?;
    let png = synthetic_png(1024);
    let sha256 = sha256_hex(&png);
    let limits = Limits::default();
    let film = synthetic::synthetic_bilateral(2500, 2000, 1);
    let localize: Vec<f64> = (0..runs)
        .map(|_| time(|| localise::localise(&film, None)).1)
        .collect();
    let localize = median(localize);
    let pass_input = vec![0.5f32; (INPUT_SIZE * INPUT_SIZE * 3) as usize];
    let mut models = Vec::new();
    let mut site_head_fit_ms = Vec::new();
    for name in card.models.keys() {
        let (classifier, load_ms) = time(|| Classifier::load(dir, name));
        let mut classifier = classifier?;
        if let Some(threads) = threads {
            classifier.set_threads(threads);
        }
        // The appliance's own analysis, which times each stage itself.
        let mut t: [Vec<f64>; 6] = Default::default();
        let mut passes = Vec::new();
        for _ in 0..runs {
            let (analysis, image_ms) =
                time(|| pipeline::analyze(&png, "bench", &sha256, &classifier, &limits));
            let s = analysis?
                .record
                .grading()
                .map(|g| g.timings_ms.clone())
                .unwrap_or_default();
            for (column, ms) in t.iter_mut().zip([
                s.decode,
                s.preprocess,
                s.inference,
                s.cam,
                s.overlay,
                image_ms,
            ]) {
                column.push(ms);
            }
            let (pass, pass_ms) = time(|| classifier.infer(&pass_input));
            pass?;
            passes.push(pass_ms);
        }
        if site_head_fit_ms.is_empty() {
            let examples = synthetic_examples(400, classifier.shipped_head().inputs());
            for _ in 0..runs.min(3) {
                let (fitted, ms) = time(|| {
                    calibration::calibrate(
                        &examples,
                        &classifier,
                        "bench",
                        0.9,
                        calibration::LAMBDA,
                        "bench",
                    )
                });
                fitted?;
                site_head_fit_ms.push(ms);
            }
        }
        let [decode, preprocess, inference, cam, overlay, image_ms] = t.map(median);
        models.push(ModelBench {
            name: name.clone(),
            file: classifier.file.display().to_string(),
            load_ms,
            passes: if card.flip_average { 2 } else { 1 },
            threads: classifier.threads(),
            pass_ms: median(passes),
            image_ms,
            stages_ms: StageMedians {
                decode,
                localize,
                preprocess,
                inference,
                cam,
                overlay,
            },
        });
    }
    Ok(Report {
        runs,
        site_head_fit_ms: median(site_head_fit_ms),
        input: "a drawn 1024×1024 knee joint crop, 8-bit PNG; localisation: a drawn 2500×2000 \
                bilateral radiograph"
            .into(),
        models,
    })
}
