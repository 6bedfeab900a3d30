//! Evaluation over a labelled folder (`<grade>/<image>`): runs the same analysis path as the
//! appliance on every image and gathers the metrics.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::pipeline;
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::model::Classifier;
use crate::record::Outcome;
use crate::tools::metrics::{self, Metrics};

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

    fn show(&self, done: usize, total: usize) {
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
pub struct Report {
    pub metrics: Metrics,
    pub skipped: Vec<(String, String)>,
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
    for (i, (path, grade)) in files.iter().enumerate() {
        let analysis = pipeline::analyze_file(path, classifier, limits)?;
        match &analysis.record.outcome {
            Outcome::Ok(g) => {
                truth.push(*grade);
                pred.push(g.grade);
            }
            Outcome::Rejected { reason } => {
                skipped.push((path.display().to_string(), reason.clone()))
            }
        }
        progress.show(i + 1, files.len());
    }
    Ok(Report {
        metrics: metrics::compute(&truth, &pred, classes)?,
        skipped,
    })
}
