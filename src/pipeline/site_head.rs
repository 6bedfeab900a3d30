//! A site head: a linear head on the shipped backbone's pooled features, fitted to a clinic's own
//! graded radiographs (`kneescreen calibrate`, which also saves, activates and reverts heads),
//! stored next to the model card; here, its file format and loading the active one.
//!
//! Heads live in `<models>/site-heads/<created>.json`; `<models>/site-heads/active.json` names the
//! one in use and its sha256. No `active.json` means the shipped head grades. A head whose bytes
//! no longer match the sha256 is refused: the appliance does not start on a tampered head.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::digest::sha256_hex;
use crate::pipeline::head::Head;
use crate::pipeline::screening::Roc;

/// The folder of site heads inside the models folder.
pub const DIR: &str = "site-heads";
/// The pointer to the active head inside [`DIR`].
pub const ACTIVE: &str = "active.json";
const FORMAT: &str = "kneescreen-site-head-v1";

/// The figures of one head over the cross-validation folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvFigures {
    pub accuracy: f64,
    pub qwk: f64,
    /// Share of knees whose OA call (at the head's operating point) is right.
    pub oa_accuracy: f64,
    /// Sensitivity and specificity of the OA call at the head's operating point.
    pub oa_sensitivity: f64,
    pub oa_specificity: f64,
    /// Area under the ROC curve of P(KL ≥ 2).
    pub oa_auc: f64,
}

/// How a head was made: from what, and how it compared with the shipped head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// UTC, RFC 3339.
    pub created: String,
    /// The folder (or "console") the graded knees came from.
    pub source: String,
    /// Knees per KL grade 0..4.
    pub knees_per_grade: Vec<usize>,
    pub folds: usize,
    /// L2 penalty of the fit (on standardised features).
    pub lambda: f64,
    pub site: CvFigures,
    /// The shipped head at its own operating point: what the site gets without calibration.
    pub shipped: CvFigures,
    /// The shipped head's OA sensitivity at the site head's specificity (the fair comparison:
    /// on another scanner the shipped threshold may call nearly every knee OA).
    pub shipped_oa_sensitivity_at_site_specificity: f64,
    /// The target sensitivity the operating points were chosen for.
    pub target_sensitivity: f64,
    /// Why it was (or was not) made active, in words.
    pub decision: String,
}

/// A fitted site head as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteHead {
    pub format: String,
    /// The backbone whose features it was fitted on: the model file's sha256.
    pub backbone_sha256: String,
    pub inputs: usize,
    pub classes: usize,
    /// Row-major `inputs × classes`, on the mean of the image's and its mirror's pooled features.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// ROC of P(KL ≥ 2) over the cross-validated predictions: the OA call's threshold.
    pub oa_roc: Roc,
    pub provenance: Provenance,
}

/// What `active.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub file: String,
    pub sha256: String,
}

/// A site head in use: the head and its name for the records.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Who signed it (this device's calibration key).
    pub signer: crate::pipeline::signature::Signer,
    pub head: Head,
    pub stored: SiteHead,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteHeadError {
    #[error("cannot read the site head {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the site head {path} was not made by this device's calibration ({reason}); run `kneescreen calibrate` again here, or `kneescreen calibrate --revert`")]
    NotThisDevice { path: PathBuf, reason: String },
    #[error("the site head {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("the site head {path} does not match the sha256 in {ACTIVE} ({actual}, expected {expected}): it was changed after calibration; run `kneescreen calibrate --revert` or calibrate again")]
    HashMismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
}

impl SiteHead {
    pub fn new(
        backbone_sha256: &str,
        head: (Vec<f32>, Vec<f32>, usize, usize),
        oa_roc: Roc,
        provenance: Provenance,
    ) -> SiteHead {
        let (w, b, inputs, classes) = head;
        SiteHead {
            format: FORMAT.into(),
            backbone_sha256: backbone_sha256.into(),
            inputs,
            classes,
            w,
            b,
            oa_roc,
            provenance,
        }
    }

    /// The head's file name: its creation time, e.g. `2026-12-01T14-50-03Z.json`.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.provenance.created.replace(':', "-"))
    }

    pub fn head(&self) -> Result<Head, crate::pipeline::shape::CamError> {
        Head::linear(self.w.clone(), self.b.clone(), self.inputs, self.classes)
    }
}

pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SiteHeadError + '_ {
    move |source| SiteHeadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The active site head of `models_dir`, if any.
pub fn load_active(models_dir: &Path) -> Result<Option<Loaded>, SiteHeadError> {
    let pointer = models_dir.join(DIR).join(ACTIVE);
    let text = match std::fs::read_to_string(&pointer) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&pointer)(e)),
    };
    let malformed = |path: &Path, reason: String| SiteHeadError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let active: Active =
        serde_json::from_str(&text).map_err(|e| malformed(&pointer, e.to_string()))?;
    if active.file.contains(['/', '\\']) || active.file.starts_with('.') {
        return Err(malformed(
            &pointer,
            format!("bad file name {:?}", active.file),
        ));
    }
    let path = models_dir.join(DIR).join(&active.file);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let actual = sha256_hex(&bytes);
    if actual != active.sha256 {
        return Err(SiteHeadError::HashMismatch {
            path,
            actual,
            expected: active.sha256,
        });
    }
    let signer = verify_made_here(&models_dir.join(DIR), &path, &bytes)?;
    let stored: SiteHead =
        serde_json::from_slice(&bytes).map_err(|e| malformed(&path, e.to_string()))?;
    if stored.format != FORMAT {
        return Err(malformed(
            &path,
            format!("unknown format {:?}", stored.format),
        ));
    }
    let head = stored.head().map_err(|e| malformed(&path, e.to_string()))?;
    Ok(Some(Loaded {
        signer,
        head,
        stored,
        file: active.file,
        sha256: actual,
    }))
}

/// Checks that a site head carries the signature of this device's calibration key.
fn verify_made_here(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<crate::pipeline::signature::Signer, SiteHeadError> {
    use crate::pipeline::signature::{self, SigningKey};
    let not_here = |reason: String| SiteHeadError::NotThisDevice {
        path: path.to_path_buf(),
        reason,
    };
    let key = SigningKey::load(
        &dir.join(signature::DEVICE_KEY_FILE),
        signature::DEVICE_KEY_NAME,
    )
    .map_err(|e| not_here(format!("this device has no calibration key: {e}")))?;
    signature::verify(path, bytes, &[key.trusted()]).map_err(|e| not_here(e.to_string()))
}
