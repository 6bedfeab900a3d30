//! What a frame depends on: the view shown, the study (record and pictures), the status figures.

use std::borrow::Cow;
use std::sync::Arc;

use image::RgbImage;

use crate::pipeline::decode::dicom::identity::PatientIdentity;
use crate::pipeline::{Analysis, KneePictures};
use crate::record::Record;

/// The views. A short button press steps through `ViewState::steps`: the whole film first when
/// knees were found in a larger radiograph, then each knee's grade, heatmap and network input,
/// then the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// The whole radiograph with each knee's box, side and grade.
    Film,
    /// KL grade, OA, probabilities, refer flag.
    #[default]
    Grade,
    /// The X-ray with the Grad-CAM heatmap and the region of interest.
    Overlay,
    /// The preprocessed image the network was given.
    Input,
    /// Model, queue, inputs watched, errors, free disk.
    Status,
}

/// One analysed (or rejected) input, with its pictures.
#[derive(Debug, Clone)]
pub struct Study {
    pub record: Record,
    /// The whole radiograph with the knees' boxes, when knees were found in a larger image.
    pub film: Option<RgbImage>,
    /// Every knee's pictures, in the record's order (none for a rejected input).
    pub knees: Vec<KneePictures>,
    /// Shown in the footer instead of the file name, only when the configuration enables it.
    pub patient: Option<PatientIdentity>,
}

/// A study as one view shows it: the record with the shown knee's grade at its top, and that
/// knee's pictures. Borrowed from the study; only the record is rewritten for a film's knee.
#[derive(Debug)]
pub struct Focused<'a> {
    pub record: Cow<'a, Record>,
    pub pictures: Option<&'a KneePictures>,
    pub film: Option<&'a RgbImage>,
}

impl From<Analysis> for Study {
    fn from(a: Analysis) -> Study {
        Study {
            record: a.record,
            film: a.film,
            knees: a.knees,
            patient: None,
        }
    }
}

impl Study {
    /// How many knees the button steps through: each knee of a film, else the one grade.
    pub fn knee_count(&self) -> usize {
        match self.film {
            Some(_) => self.knees.len().max(1),
            None => 1,
        }
    }

    /// The study as seen for knee `n` of a film; any other study shows its headline knee.
    pub fn focus(&self, n: usize) -> Focused<'_> {
        let headline = self.record.grading().map_or(0, |g| g.headline_knee);
        match (&self.film, self.knees.get(n)) {
            (Some(film), Some(pictures)) => {
                let mut record = self.record.clone();
                if let Some(g) = record.grading_mut() {
                    *g = g.focus(n);
                }
                Focused {
                    record: Cow::Owned(record),
                    pictures: Some(pictures),
                    film: Some(film),
                }
            }
            _ => Focused {
                record: Cow::Borrowed(&self.record),
                pictures: self.knees.get(headline),
                film: self.film.as_ref(),
            },
        }
    }
}

/// What the status view reports about the appliance (and the console's `/api/status`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatusInfo {
    /// Model name and variant, e.g. "kneekl-mnv2 int8".
    pub model: String,
    /// Why this variant: what `kneescreen bench --choose` measured on this device, while the
    /// configured model is still the one it chose.
    pub model_choice: Option<String>,
    /// The head that grades: "shipped", or the site head's file (`site-heads/<file>`).
    pub head: String,
    /// Inputs found but not analysed yet.
    pub queue: usize,
    /// Folders and USB mounts being watched.
    pub watched: Vec<String>,
    /// The newest problem that still stands, in words a technician understands.
    pub last_error: Option<String>,
    /// Free space in the results folder; `None` when it cannot be read.
    pub free_disk_bytes: Option<u64>,
    pub processed: u64,
    pub rejected: u64,
    /// The DICOM node, when it listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<crate::dicom_net::NodeActivity>,
    /// The web console's certificate fingerprint (SHA-256), when it speaks TLS: a technician
    /// compares it with what the browser shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_certificate: Option<String>,
    /// The outbox to the PACS, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox: Option<crate::pacs::outbox::OutboxStatus>,
}

/// Everything a frame depends on: rendering the same state always draws the same pixels.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    pub view: View,
    /// The study shown; `None` until the first input has been analysed (a waiting screen).
    pub study: Option<Arc<Study>>,
    /// 0-based position of `study` among the `history_len` studies kept; shown 1-based.
    pub history_index: usize,
    pub history_len: usize,
    /// The file being analysed now, if any: a "working…" strip shows on every view.
    pub busy: Option<String>,
    pub status: StatusInfo,
    /// Which knee of the study the grade, heatmap and input views show (0-based).
    pub knee: usize,
}

impl ViewState {
    /// The views of the study shown, in button order, each with its knee.
    pub fn steps(&self) -> Vec<(View, usize)> {
        let study = self.study.as_deref();
        let film = study.is_some_and(|s| s.film.is_some());
        let knees = study.map_or(1, Study::knee_count);
        let per_knee =
            (0..knees).flat_map(|k| [View::Grade, View::Overlay, View::Input].map(|v| (v, k)));
        film.then_some((View::Film, 0))
            .into_iter()
            .chain(per_knee)
            .chain([(View::Status, 0)])
            .collect()
    }

    /// 1-based position of the view shown among `steps`, and how many there are.
    pub fn position(&self) -> (usize, usize) {
        let steps = self.steps();
        let at = steps.iter().position(|&s| s == (self.view, self.knee));
        (at.map_or(1, |i| i + 1), steps.len())
    }

    /// A short press: the next view, wrapping from the status back to the first.
    pub fn next(&mut self) {
        let steps = self.steps();
        let at = steps.iter().position(|&s| s == (self.view, self.knee));
        (self.view, self.knee) = steps[at.map_or(0, |i| (i + 1) % steps.len())];
    }

    /// Shows `study` from its first view: the film when it has one, else the grade.
    pub fn open(&mut self, study: Option<Arc<Study>>) {
        self.study = study;
        (self.view, self.knee) = self.steps()[0];
    }
}

/// The last path component: panels are too narrow for folders.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\'])
        .find(|s| !s.is_empty())
        .unwrap_or(path)
}
