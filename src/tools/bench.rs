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
use crate::pipeline::model::{self, runnable_variants, Card, Classifier, KneeFeatures};
use crate::pipeline::preprocess::{self, INPUT_SIZE};
use crate::tools::synthetic;

/// The variant every other one is compared with.
pub const REFERENCE: &str = "fp32";

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

/// How a variant's grades compare with fp32's on the same drawn knees.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub knees: usize,
    /// Knees given the same KL grade as fp32 gives them.
    pub same_grade: usize,
    /// The largest difference of any grade's probability from fp32's.
    pub max_probability_difference: f32,
}

impl Agreement {
    pub fn fraction(&self) -> f64 {
        self.same_grade as f64 / self.knees.max(1) as f64
    }
}

/// The share of knees a variant must grade as fp32 does to be chosen.
pub const MIN_AGREEMENT: f64 = 0.99;

#[derive(Debug, Serialize)]
pub struct ModelBench {
    pub name: String,
    pub file: String,
    pub load_ms: f64,
    /// Network passes per image: 2 when the card averages the image and its mirror.
    pub passes: usize,
    /// Threads one image's passes ran on (the image and its mirror at once with two or more).
    pub threads: usize,
    /// Threads each pass's matrix products were split over.
    pub pass_threads: usize,
    /// The matrix-multiplication kernels tract selected on this CPU, with how many operations
    /// use each.
    pub kernels: std::collections::BTreeMap<String, usize>,
    /// Grades against fp32's on drawn knees (`None` when not measured).
    pub agreement: Option<Agreement>,
    /// One network pass alone.
    pub pass_ms: f64,
    /// One whole analysis (decode to record), wall time.
    pub image_ms: f64,
    pub stages_ms: StageMedians,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub runs: usize,
    /// Whether this CPU has half-precision arithmetic (then the fp16 variant is measured too).
    pub cpu_has_fp16: bool,
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
        s += "model   load ms    pass   image  passes threads  decode  localize  preproc  inference     cam  overlay  (ms)  same grade as fp32\n";
        for m in &self.models {
            let t = &m.stages_ms;
            let agreement = m.agreement.as_ref().map_or("-".to_string(), |a| {
                format!("{}/{} knees", a.same_grade, a.knees)
            });
            s += &format!(
                "{:<6} {:>8.1} {:>7.2} {:>7.2} {:>7} {:>7} {:>7.2} {:>9.2} {:>8.2} {:>10.2} {:>7.2} {:>8.2}        {}\n",
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
                t.overlay,
                agreement
            );
        }
        s += "kernels:\n";
        for m in &self.models {
            let kernels: Vec<String> = m.kernels.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            s += &format!("  {:<6} {}\n", m.name, kernels.join(", "));
        }
        if !self.cpu_has_fp16 {
            s += "fp16: not measured, this CPU has no half-precision arithmetic\n";
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

/// `n` drawn knee joints of varied size, position, side and grain, as network inputs: what
/// the variants' grades are compared on, on the device itself.
pub fn agreement_knees(n: usize) -> Vec<image::GrayImage> {
    (0..n)
        .map(|i| {
            let k = i as f32;
            let size = 224.0 * (0.8 + 0.6 * ((k * 0.37) % 1.0));
            let (dx, dy) = (
                20.0 * ((k * 0.61) % 1.0 - 0.5),
                20.0 * ((k * 0.23) % 1.0 - 0.5),
            );
            let film = synthetic::knee_film(
                224,
                224,
                &[(112.0 + dx, 112.0 + dy, size, i % 2 == 1)],
                i as u32 + 1,
            );
            preprocess::preprocess(&film)
        })
        .collect()
}

/// Grades `knees` with `variant` and with `reference` (fp32) and counts where they agree.
pub fn agreement(
    reference: &Classifier,
    variant: &Classifier,
    knees: &[image::GrayImage],
) -> anyhow::Result<Agreement> {
    let mut same_grade = 0;
    let mut max_probability_difference = 0.0f32;
    for knee in knees {
        let (a, b) = (reference.classify(knee)?, variant.classify(knee)?);
        same_grade += usize::from(a.top().0 == b.top().0);
        for (p, q) in a.probabilities.iter().zip(&b.probabilities) {
            max_probability_difference = max_probability_difference.max((p - q).abs());
        }
    }
    Ok(Agreement {
        knees: knees.len(),
        same_grade,
        max_probability_difference,
    })
}

/// The variant `bench --choose` picks: the fastest per image among those that grade the drawn
/// knees as fp32 does (at least `MIN_AGREEMENT`); `None` when none was compared.
pub fn fastest_agreeing(report: &Report) -> Option<&ModelBench> {
    report
        .models
        .iter()
        .filter(|m| {
            m.agreement
                .as_ref()
                .is_some_and(|a| a.fraction() >= MIN_AGREEMENT)
        })
        .min_by(|a, b| a.image_ms.total_cmp(&b.image_ms))
}

/// Benchmarks every model this machine can run (the card's, and fp16 where the CPU has it) in
/// `dir`; `threads` overrides the classifier's default (every core). With `agreement_knees`,
/// each variant's grades are compared with fp32's on that many drawn knees.
pub fn run(
    dir: &Path,
    runs: usize,
    threads: Option<usize>,
    agreement_knees: usize,
) -> anyhow::Result<Report> {
    let runs = runs.max(1);
    let card = Card::load(dir)?;
    let knees = self::agreement_knees(agreement_knees);
    let reference = match agreement_knees {
        0 => None,
        _ => Some(Classifier::load(dir, REFERENCE)?),
    };
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
    for name in runnable_variants(&card) {
        let (classifier, load_ms) = time(|| Classifier::load(dir, &name));
        let mut classifier = classifier?;
        if let Some(threads) = threads {
            classifier.set_threads(threads);
        }
        let agreement = match &reference {
            Some(_) if name == REFERENCE => Some(Agreement {
                knees: knees.len(),
                same_grade: knees.len(),
                max_probability_difference: 0.0,
            }),
            Some(reference) => Some(self::agreement(reference, &classifier, &knees)?),
            None => None,
        };
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
            name,
            file: classifier.file.display().to_string(),
            load_ms,
            passes: if card.flip_average { 2 } else { 1 },
            threads: classifier.threads(),
            pass_threads: classifier.pass_threads(),
            kernels: classifier.kernels(),
            agreement,
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
        cpu_has_fp16: model::cpu_has_fp16(),
        site_head_fit_ms: median(site_head_fit_ms),
        input: "a drawn 1024×1024 knee joint crop, 8-bit PNG; localisation: a drawn 2500×2000 \
                bilateral radiograph"
            .into(),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(name: &str, image_ms: f64, same_grade: Option<usize>) -> ModelBench {
        ModelBench {
            name: name.into(),
            file: String::new(),
            load_ms: 0.0,
            passes: 2,
            threads: 2,
            pass_threads: 1,
            kernels: Default::default(),
            agreement: same_grade.map(|same_grade| Agreement {
                knees: 100,
                same_grade,
                max_probability_difference: 0.0,
            }),
            pass_ms: image_ms / 2.0,
            image_ms,
            stages_ms: StageMedians {
                decode: 0.0,
                localize: 0.0,
                preprocess: 0.0,
                inference: 0.0,
                cam: 0.0,
                overlay: 0.0,
            },
        }
    }

    fn report(models: Vec<ModelBench>) -> Report {
        Report {
            runs: 1,
            cpu_has_fp16: false,
            site_head_fit_ms: 0.0,
            input: String::new(),
            models,
        }
    }

    #[test]
    fn the_fastest_variant_that_grades_as_fp32_is_chosen() {
        let r = report(vec![
            measured("fp32", 60.0, Some(100)),
            measured("int8", 40.0, Some(99)),
            measured("fp16", 30.0, Some(98)),
        ]);
        assert_eq!(
            fastest_agreeing(&r).unwrap().name,
            "int8",
            "fp16 disagrees on 2 %"
        );
        let r = report(vec![
            measured("fp32", 60.0, Some(100)),
            measured("int8", 80.0, Some(100)),
        ]);
        assert_eq!(fastest_agreeing(&r).unwrap().name, "fp32");
        let r = report(vec![measured("fp32", 60.0, None)]);
        assert!(
            fastest_agreeing(&r).is_none(),
            "nothing compared, nothing chosen"
        );
    }
}
