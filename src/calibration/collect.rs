//! Graded knees for calibration from a folder `DIR/<grade>/…`: every file goes through the
//! appliance's own analysis path (decode, joint localisation, preprocessing, both views); what
//! cannot serve is listed with its reason. Files are only read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::calibration::Example;
use crate::pipeline::decode::limits::Limits;
use crate::pipeline::digest::sha256_hex;
use crate::pipeline::model::Classifier;
use crate::pipeline::{self, Analysis};
use crate::record::{Outcome, ReferReason};

/// Why a knee from a DICOM of another modality, or in colour, is not used.
pub const NOT_AN_X_RAY: &str = "not a greyscale X-ray (its DICOM header says so)";

/// A file or folder not used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub path: String,
    pub reason: String,
}

/// The graded knees found, and what was refused.
#[derive(Debug, Default)]
pub struct Collected {
    pub examples: Vec<Example>,
    pub refused: Vec<Refused>,
}

/// Reads every file of `dir/0` … `dir/4`; `progress(done, total)` after each.
pub fn from_dir(
    dir: &Path,
    classifier: &Classifier,
    limits: &Limits,
    progress: impl Fn(usize, usize),
) -> anyhow::Result<Collected> {
    let mut out = Collected::default();
    let mut files = Vec::new();
    for entry in listing(dir)? {
        let grade = entry
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|&g| g <= 4);
        let refuse = |reason: &str| Refused {
            path: entry.display().to_string(),
            reason: reason.to_string(),
        };
        match (entry.is_dir(), grade) {
            (true, Some(grade)) => {
                for p in listing(&entry)? {
                    match p.is_file() {
                        true => files.push((p, grade)),
                        false => out.refused.push(Refused {
                            path: p.display().to_string(),
                            reason: "not a file (grade folders hold image files only)".into(),
                        }),
                    }
                }
            }
            (true, None) => out.refused.push(refuse(
                "the folder's name is not a KL grade 0-4: nothing in it was used",
            )),
            (false, _) => out.refused.push(refuse(
                "not inside a grade folder 0-4: the grade is unknown",
            )),
        }
    }
    anyhow::ensure!(
        !files.is_empty(),
        "no graded images in {}: put each knee's image in the folder of its KL grade, {}/0 … {}/4",
        dir.display(),
        dir.display(),
        dir.display()
    );
    let (mut same_file, mut same_image) = (HashMap::new(), HashMap::new());
    for (i, (path, grade)) in files.iter().enumerate() {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let analysis = pipeline::analyze_file(path, classifier, limits)?;
        match usable(&analysis, &mut same_file, &mut same_image, &name) {
            Ok(features) => out.examples.push(Example {
                name,
                grade: *grade,
                features,
            }),
            Err(reason) => out.refused.push(Refused {
                path: path.display().to_string(),
                reason,
            }),
        }
        progress(i + 1, files.len());
    }
    Ok(out)
}

/// The entries of `dir` that are not hidden, sorted.
fn listing(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let hidden = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !hidden(p))
        .collect();
    entries.sort();
    Ok(entries)
}

/// The knee's features, or why this analysis cannot serve as a graded knee.
fn usable(
    analysis: &Analysis,
    same_file: &mut HashMap<String, String>,
    same_image: &mut HashMap<String, String>,
    name: &str,
) -> Result<crate::pipeline::model::KneeFeatures, String> {
    let g = match &analysis.record.outcome {
        Outcome::Ok(g) => g,
        Outcome::Rejected { reason } => return Err(reason.clone()),
    };
    if let Some(sha) = &analysis.record.input_sha256 {
        if let Some(first) = same_file.insert(sha.clone(), name.to_string()) {
            return Err(format!(
                "the same file as {first} (a duplicate is used once)"
            ));
        }
    }
    if g.knees.len() != 1 {
        return Err(format!(
            "{} knee joints found: a grade folder holds one knee per file (crop each knee, or grade each knee in the console)",
            g.knees.len()
        ));
    }
    if g.knees[0].refer_reason == Some(ReferReason::NotARadiograph) {
        return Err(NOT_AN_X_RAY.into());
    }
    let (Some(pictures), Some(features)) = (analysis.knees.first(), analysis.features.first())
    else {
        return Err("no knee was graded".into());
    };
    let pixels = sha256_hex(pictures.network_input.as_raw());
    if let Some(first) = same_image.insert(pixels, name.to_string()) {
        return Err(format!(
            "the same knee image as {first} once preprocessed (a duplicate is used once)"
        ));
    }
    Ok(features.clone())
}
