//! The results folder: the only place its file names are spelled (`ResultFile`, `KINDS`; the
//! console's script gets them from here). A study (one input) is `<stem>.json` (the record),
//! `<stem>.overlay.png` and `<stem>.input.png` (the headline knee's heatmap picture and network
//! input), and for a radiograph in which knees were found `<stem>.film.png` and each knee's
//! `<stem>.knee<n>.overlay.png` / `.input.png`. Files uploaded through the console are kept in
//! `uploads/<stem>.bin`. Pictures are written before the record, so a record never points at a
//! missing picture.

use std::path::{Path, PathBuf};

use crate::pipeline::Analysis;
use crate::record::Record;
use crate::store::atomic::{write_atomic, write_png};

/// The files of one study in the results folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFile {
    /// `<stem>.json`: the record.
    Json,
    /// `<stem>.overlay.png`: the headline knee's crop with the Grad-CAM heatmap and ROI.
    Overlay,
    /// `<stem>.input.png`: the headline knee's preprocessed network input.
    Input,
    /// `<stem>.film.png`: the whole radiograph with each knee's box (when knees were found in it).
    Film,
    /// `<stem>.knee<n>.overlay.png`: knee n's heatmap picture (n from 1, in the record's order).
    KneeOverlay(usize),
    /// `<stem>.knee<n>.input.png`: knee n's network input.
    KneeInput(usize),
}

/// Each kind of file: its key (the console's name for it) and its suffix, `{n}` standing for a
/// knee's number.
pub const KINDS: [(&str, &str); 6] = [
    ("json", ".json"),
    ("overlay", ".overlay.png"),
    ("input", ".input.png"),
    ("film", ".film.png"),
    ("knee_overlay", ".knee{n}.overlay.png"),
    ("knee_input", ".knee{n}.input.png"),
];

impl ResultFile {
    /// What follows the stem in the file's name.
    pub fn suffix(self) -> String {
        let (kind, n) = match self {
            ResultFile::Json => (0, 0),
            ResultFile::Overlay => (1, 0),
            ResultFile::Input => (2, 0),
            ResultFile::Film => (3, 0),
            ResultFile::KneeOverlay(n) => (4, n),
            ResultFile::KneeInput(n) => (5, n),
        };
        KINDS[kind].1.replace("{n}", &n.to_string())
    }

    /// The file's name for a study.
    pub fn name(self, stem: &str) -> String {
        format!("{stem}{}", self.suffix())
    }

    /// Splits a file name into its study's stem and which file it is.
    pub fn parse(name: &str) -> Option<(&str, ResultFile)> {
        for (kind, file) in [
            (
                ".overlay.png",
                ResultFile::KneeOverlay as fn(usize) -> ResultFile,
            ),
            (".input.png", ResultFile::KneeInput),
        ] {
            let Some(rest) = name.strip_suffix(kind) else {
                continue;
            };
            if let Some((stem, digits)) = rest.rsplit_once(".knee") {
                let n: usize = digits.parse().ok()?;
                return (n >= 1 && n.to_string() == digits).then(|| (stem, file(n)));
            }
        }
        [
            ResultFile::Json,
            ResultFile::Overlay,
            ResultFile::Input,
            ResultFile::Film,
        ]
        .into_iter()
        .find_map(|file| {
            name.strip_suffix(file.suffix().as_str())
                .map(|stem| (stem, file))
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFile::Json => "application/json",
            _ => "image/png",
        }
    }
}

/// Longest result stem, so `<stem>.overlay.png` stays well inside every filesystem's name limit.
const MAX_STEM: usize = 80;

/// A safe, readable and unique file stem for an input's results: `<sanitised name>-<first 8 hex
/// digits of its SHA-256>`. ASCII letters, digits, `-` and `_` only, no leading dot, ≤ 80 chars.
/// The same bytes under the same name always give the same stem, so redoing an input overwrites
/// its own results instead of adding new ones.
pub fn result_stem(path: &Path, sha256: &str) -> String {
    let hash: String = sha256
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let hash = if hash.is_empty() {
        "00000000".to_string()
    } else {
        hash
    };

    let raw = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    let trim = |c: char| c == '_' || c == '-';
    let mut name = name.trim_matches(trim).to_string();
    // `name` is ASCII, so cutting at any byte index is cutting at a character boundary.
    name.truncate(MAX_STEM - 1 - hash.len());
    let name = name.trim_end_matches(trim);
    let name = if name.is_empty() { "input" } else { name };
    format!("{name}-{hash}")
}

/// The folder, inside the results folder, where files uploaded through the console are kept.
pub const UPLOADS: &str = "uploads";

/// The clinician's own KL grades of graded knees, entered in the console (for site calibration).
pub const SITE_GRADES: &str = "site-grades.json";

/// Where an upload's bytes are kept, as sent.
pub fn upload_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(UPLOADS).join(format!("{stem}.bin"))
}

/// Reads one of a study's files.
pub fn read(dir: &Path, stem: &str, kind: ResultFile) -> Option<Vec<u8>> {
    std::fs::read(dir.join(kind.name(stem))).ok()
}

/// The newest `limit` records in the folder, newest first, with their stems.
pub fn recent(dir: &Path, limit: usize) -> Vec<(String, Record)> {
    let json = ResultFile::Json.suffix();
    let mut files: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(json.as_str())?.to_string();
            Some((e.metadata().ok()?.modified().ok()?, stem))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files
        .into_iter()
        .filter_map(|(_, stem)| Some((stem.clone(), read_record(dir, &stem)?)))
        .take(limit)
        .collect()
}

/// Reads a study's record.
pub fn read_record(dir: &Path, stem: &str) -> Option<Record> {
    serde_json::from_slice(&read(dir, stem, ResultFile::Json)?).ok()
}

/// Writes the study's pictures — the headline knee's overlay and network input, and when knees
/// were found in a larger image the film and every knee's pictures — then `<stem>.json` last,
/// so a record never points at pictures that are not there yet.
pub fn write_analysis(dir: &Path, stem: &str, analysis: &Analysis) -> std::io::Result<PathBuf> {
    if let Some(headline) = analysis.headline() {
        write_png(&dir.join(ResultFile::Overlay.name(stem)), &headline.overlay)?;
        write_png(
            &dir.join(ResultFile::Input.name(stem)),
            &headline.network_input,
        )?;
    }
    if let Some(film) = &analysis.film {
        write_png(&dir.join(ResultFile::Film.name(stem)), film)?;
        for (i, knee) in analysis.knees.iter().enumerate() {
            let n = i + 1;
            write_png(
                &dir.join(ResultFile::KneeOverlay(n).name(stem)),
                &knee.overlay,
            )?;
            write_png(
                &dir.join(ResultFile::KneeInput(n).name(stem)),
                &knee.network_input,
            )?;
        }
    }
    write_record(dir, stem, &analysis.record)
}

/// Writes `<stem>.json` for a record.
pub fn write_record(dir: &Path, stem: &str, record: &Record) -> std::io::Result<PathBuf> {
    let path = dir.join(ResultFile::Json.name(stem));
    let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_atomic(&path, &text)?;
    Ok(path)
}
