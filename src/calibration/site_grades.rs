//! The clinician's own KL grades of knees the appliance graded, entered in the console:
//! `<results>/site-grades.json` (`results_dir::SITE_GRADES`), `{"<stem>": {"<knee index>": grade}}`. Calibration from the
//! console reads each graded knee's network input picture back from the results folder (a
//! lossless PNG of exactly what the network saw) and extracts its features again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::calibration::collect::{Collected, Refused, NOT_AN_X_RAY};
use crate::calibration::Example;
use crate::pipeline::digest::sha256_hex;
use crate::pipeline::model::Classifier;
use crate::record::ReferReason;
use crate::store::atomic::write_atomic;
use crate::store::results_dir::{self, ResultFile};

/// Grades by study stem, then by knee index (in the record's order).
pub type SiteGrades = BTreeMap<String, BTreeMap<usize, u8>>;

/// The grades entered so far (none before the first). A file that cannot be read is an error,
/// never taken as empty: the next grade would replace the clinician's earlier ones.
pub fn load(results: &Path) -> Result<SiteGrades, String> {
    let path = results.join(results_dir::SITE_GRADES);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is damaged ({e}): the grades in it are kept as they are; \
                 repair or move it away to enter grades again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SiteGrades::new()),
        Err(e) => Err(format!("{} cannot be read: {e}", path.display())),
    }
}

/// Sets (or, with `None`, clears) the clinician's grade of knee `knee` of study `stem`.
pub fn set(results: &Path, stem: &str, knee: usize, grade: Option<u8>) -> Result<(), String> {
    if grade.is_some_and(|g| g > 4) {
        return Err("a KL grade is 0 to 4".into());
    }
    let record = results_dir::read_record(results, stem).ok_or("no such study")?;
    let knees = record.grading().map_or(0, |g| g.knees.len().max(1));
    if knee >= knees {
        return Err(format!("the study has {knees} graded knee(s)"));
    }
    let mut grades = load(results)?;
    match grade {
        Some(g) => {
            grades.entry(stem.to_string()).or_default().insert(knee, g);
        }
        None => {
            if let Some(k) = grades.get_mut(stem) {
                k.remove(&knee);
            }
            grades.retain(|_, k| !k.is_empty());
        }
    }
    let bytes = serde_json::to_vec_pretty(&grades).map_err(|e| e.to_string())?;
    write_atomic(&results.join(results_dir::SITE_GRADES), &bytes)
        .map_err(|e| format!("cannot save the grade: {e}"))
}

/// Knees graded per KL grade 0..4.
pub fn counts(grades: &SiteGrades) -> Vec<usize> {
    let mut n = vec![0; 5];
    for g in grades.values().flat_map(|k| k.values()) {
        if let Some(c) = n.get_mut(usize::from(*g)) {
            *c += 1;
        }
    }
    n
}

/// The graded knees' features, from their network input pictures in `results`. Like a graded
/// folder (`collect`), a knee that is not from a greyscale X-ray, or whose picture is the same as
/// an earlier one's, is refused with the reason.
pub fn examples(results: &Path, grades: &SiteGrades, classifier: &Classifier) -> Collected {
    let mut out = Collected::default();
    let mut same_image = HashMap::new();
    for (stem, knees) in grades {
        let record = results_dir::read_record(results, stem);
        for (&knee, &grade) in knees {
            let name = format!("{stem} knee {}", knee + 1);
            let refer = record.as_ref().and_then(|r| r.grading()).and_then(|g| {
                let k = g.knees.get(knee)?;
                k.refer_reason
            });
            let features = match refer {
                Some(ReferReason::NotARadiograph) => Err(NOT_AN_X_RAY.to_string()),
                _ => picture(results, stem, knee).and_then(|input| {
                    let pixels = sha256_hex(input.as_raw());
                    if let Some(first) = same_image.insert(pixels, name.clone()) {
                        return Err(format!(
                            "the same knee image as {first} (a duplicate is used once)"
                        ));
                    }
                    classifier
                        .classify(&input)
                        .map_err(|e| e.to_string())
                        .and_then(|c| c.features().map_err(|e| e.to_string()))
                }),
            };
            match features {
                Ok(features) => out.examples.push(Example {
                    name,
                    grade,
                    features,
                }),
                Err(reason) => out.refused.push(Refused { path: name, reason }),
            }
        }
    }
    out
}

/// The network input picture of knee `knee` (0-based) of study `stem`.
fn picture(results: &Path, stem: &str, knee: usize) -> Result<image::GrayImage, String> {
    let png = results_dir::read(results, stem, ResultFile::KneeInput(knee + 1))
        .or_else(|| {
            (knee == 0)
                .then(|| results_dir::read(results, stem, ResultFile::Input))
                .flatten()
        })
        .ok_or_else(|| {
            "its network input picture is no longer in the results folder".to_string()
        })?;
    image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .map(|img| img.to_luma8())
        .map_err(|e| format!("its network input picture cannot be read: {e}"))
}
