//! Evaluation over a labelled folder (`<grade>/<image>`): runs the same analysis path as the
//! appliance on every image and gathers the metrics, and the ROC of the OA call.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::pipeline;
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::model::Classifier;
use crate::pipeline::screening::{self, OperatingPoint, Roc};
use crate::record::Outcome;
use crate::tools::metrics::{self, Metrics, POSITIVE_GRADE};

/// Shows progress on stderr when it is a terminal.
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn on_terminal() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        let width = 40;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        eprint!(
            "\r[{}{}] {done}/{total}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

/// Metrics plus the files that could not be graded (name, reason).
#[derive(serde::Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub metrics: Metrics,
    /// The OA call on this set; `None` when it holds only OA or only non-OA knees.
    pub oa_screening: Option<Screening>,
    #[serde(skip)]
    pub skipped: Vec<(String, String)>,
}

/// How the OA call (P(KL ≥ 2) ≥ threshold) does on the evaluated set.
#[derive(serde::Serialize)]
pub struct Screening {
    /// Area under the ROC curve of P(KL ≥ 2).
    pub auc: f64,
    /// The model's operating point (threshold and where it was chosen); `None` when the model
    /// calls OA by grade.
    pub operating_point: Option<OperatingPoint>,
    /// Sensitivity and specificity of the OA call on this set.
    pub sensitivity: f64,
    pub specificity: f64,
    #[serde(skip)]
    pub roc: Roc,
}

/// The labelled images under `dir`: every file in the sub-folders named 0..=4.
pub fn labelled_files(dir: &Path, classes: usize) -> anyhow::Result<Vec<(PathBuf, u8)>> {
    let mut files = Vec::new();
    for grade in 0..classes {
        let sub = dir.join(grade.to_string());
        if !sub.is_dir() {
            continue;
        }
        let mut names: Vec<PathBuf> = std::fs::read_dir(&sub)
            .with_context(|| format!("listing {}", sub.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|p| (p, grade as u8)));
    }
    anyhow::ensure!(
        !files.is_empty(),
        "no images found in {}/0 … {}/{}",
        dir.display(),
        dir.display(),
        classes - 1
    );
    Ok(files)
}

/// Grades every labelled image through the same analysis the appliance runs.
pub fn evaluate(
    dir: &Path,
    classifier: &Classifier,
    limits: &Limits,
    progress: Progress,
) -> anyhow::Result<Report> {
    let classes = classifier.card().classes.len();
    let files = labelled_files(dir, classes)?;
    let (mut truth, mut pred, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let (mut oa_probability, mut oa_called) = (Vec::new(), Vec::new());
    for (i, (path, grade)) in files.iter().enumerate() {
        let analysis = pipeline::analyze_file(path, classifier, limits)?;
        match &analysis.record.outcome {
            Outcome::Ok(g) => {
                truth.push(*grade);
                pred.push(g.headline.grade);
                oa_probability.push(g.headline.oa_probability);
                oa_called.push(g.headline.oa);
            }
            Outcome::Rejected { reason } => {
                skipped.push((path.display().to_string(), reason.clone()))
            }
        }
        progress.show(i + 1, files.len());
    }
    let positive: Vec<bool> = truth.iter().map(|&t| t >= POSITIVE_GRADE).collect();
    let source = format!("{} ({} knees)", dir.display(), truth.len());
    let oa_screening = screening::roc(&oa_probability, &positive, &source)
        .ok()
        .map(|roc| {
            let (sensitivity, specificity) = screening::rates(&oa_called, &positive);
            Screening {
                auc: screening::auc(&roc),
                operating_point: classifier.oa_call().cloned(),
                sensitivity,
                specificity,
                roc,
            }
        });
    Ok(Report {
        metrics: metrics::compute(&truth, &pred, classes)?,
        oa_screening,
        skipped,
    })
}

impl Report {
    /// The OA call's figures as text, after `Metrics::to_text`.
    pub fn screening_text(&self) -> String {
        let Some(s) = &self.oa_screening else {
            return "OA call: no ROC (the set lacks OA or non-OA knees)\n".into();
        };
        let rule = match &s.operating_point {
            Some(op) => format!(
                "P(KL>=2) >= {:.3}, set for sensitivity {:.2} on {} (gave {:.3} / {:.3} there)",
                op.threshold, op.target_sensitivity, op.source, op.sensitivity, op.specificity
            ),
            None => "grade >= 2 (the model has no operating point)".into(),
        };
        format!(
            "\nOA call: {rule}\n  ROC AUC of P(KL>=2)     {:.4}\n  sensitivity            {:.4}\n  specificity            {:.4}\n",
            s.auc, s.sensitivity, s.specificity
        )
    }
}
