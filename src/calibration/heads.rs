//! Site heads on disk: saving a fitted head, making it the active one, going back to the shipped
//! head. Loading is `pipeline::site_head::load_active`.

use std::path::{Path, PathBuf};

use crate::calibration::collect::Refused;
use crate::calibration::Calibration;
use crate::pipeline::digest::sha256_hex;
use crate::pipeline::site_head::{io_error, Active, SiteHead, SiteHeadError, ACTIVE, DIR};
use crate::store::atomic;

/// A calibration saved as a head file, and whether it became active.
pub struct Saved {
    pub calibration: Calibration,
    pub path: PathBuf,
    pub sha256: String,
    pub activated: bool,
    /// Activated although cross-validation showed no gain.
    pub forced: bool,
}

/// Saves the calibration's head and makes it active when it is better, or when `force`.
pub fn keep(
    models_dir: &Path,
    calibration: Calibration,
    force: bool,
) -> Result<Saved, SiteHeadError> {
    let (file, sha256) = save(models_dir, &calibration.head)?;
    let activated = calibration.better || force;
    if activated {
        activate(models_dir, &file, &sha256)?;
    }
    Ok(Saved {
        forced: activated && !calibration.better,
        path: models_dir.join(DIR).join(file),
        sha256,
        activated,
        calibration,
    })
}

impl Saved {
    /// What the CLI's `--json` and the console show.
    pub fn to_json(&self, refused: &[Refused]) -> serde_json::Value {
        serde_json::json!({
            "file": self.path,
            "sha256": self.sha256,
            "activated": self.activated,
            "forced": self.forced,
            "provenance": self.calibration.head.provenance,
            "refused": refused.iter().map(|r| serde_json::json!({"path": r.path, "reason": r.reason})).collect::<Vec<_>>(),
            "notes": self.calibration.notes,
        })
    }

    /// The figures table and what became of the head, in words.
    pub fn to_text(&self, refused: usize) -> String {
        let state = match (self.activated, self.forced) {
            (true, false) => "now active: analyze, eval and run grade with it (`kneescreen calibrate --revert` goes back)",
            (true, true) => "now ACTIVE because --force was given, although cross-validation shows no gain",
            (false, _) => "NOT activated: the shipped head stays in use (--force activates it anyway)",
        };
        format!(
            "{}site head saved as {} (sha256 {});\n{state}",
            crate::calibration::report_text(&self.calibration, refused),
            self.path.display(),
            self.sha256
        )
    }
}

/// Writes `head` into the models folder (never over another head); returns its file name and
/// sha256. It is not made active.
pub fn save(models_dir: &Path, head: &SiteHead) -> Result<(String, String), SiteHeadError> {
    let dir = models_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let bytes = serde_json::to_vec_pretty(head).map_err(|e| SiteHeadError::Malformed {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let mut name = head.file_name();
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{}-{n}.json", head.file_name().trim_end_matches(".json"));
    }
    let path = dir.join(&name);
    atomic::write_atomic(&path, &bytes).map_err(io_error(&path))?;
    // Signed with this device's key, so loading knows it was made here.
    crate::pipeline::signature::device_key(&dir)
        .and_then(|key| key.sign(&path, &bytes))
        .map_err(io_error(&path))?;
    Ok((name, sha256_hex(&bytes)))
}

/// Makes the saved head `file` (with `sha256`) the active one.
pub fn activate(models_dir: &Path, file: &str, sha256: &str) -> Result<(), SiteHeadError> {
    let pointer = models_dir.join(DIR).join(ACTIVE);
    let active = Active {
        file: file.into(),
        sha256: sha256.into(),
    };
    let bytes = serde_json::to_vec_pretty(&active).unwrap_or_default();
    atomic::write_atomic(&pointer, &bytes).map_err(io_error(&pointer))
}

/// Goes back to the shipped head; returns the head that was active. Heads stay on disk.
pub fn revert(models_dir: &Path) -> Result<Option<String>, SiteHeadError> {
    let pointer = models_dir.join(DIR).join(ACTIVE);
    let was = std::fs::read_to_string(&pointer)
        .ok()
        .and_then(|t| serde_json::from_str::<Active>(&t).ok())
        .map(|a| a.file);
    match std::fs::remove_file(&pointer) {
        Ok(()) => Ok(was),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&pointer)(e)),
    }
}
