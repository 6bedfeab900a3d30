//! What a frame depends on: the view shown, the study (record and pictures), the status figures.

use std::sync::Arc;

use image::{GrayImage, RgbImage};

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
    /// The headline knee's pictures (of the record's top-level grade), or knee `n`'s in a study
    /// focused on one knee (`Study::focus`).
    pub overlay: Option<RgbImage>,
    pub network_input: Option<GrayImage>,
    /// The whole radiograph with the knees' boxes, when knees were found in a larger image.
    pub film: Option<RgbImage>,
    /// Every knee's pictures, in the record's order.
    pub knees: Vec<KneePictures>,
    /// Shown in the footer instead of the file name, only when the configuration enables it.
    pub patient: Option<PatientIdentity>,
}

impl From<Analysis> for Study {
    fn from(a: Analysis) -> Study {
        let headline = a.headline();
        Study {
            overlay: headline.map(|k| k.overlay.clone()),
            network_input: headline.map(|k| k.network_input.clone()),
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

    /// The study as seen for knee `n` of a film: its grade at the top of the record and its
    /// pictures; any other study as it is.
    pub fn focus(&self, n: usize) -> Study {
        let (Some(_), Some(pictures)) = (&self.film, self.knees.get(n)) else {
            return self.clone();
        };
        let mut record = self.record.clone();
        if let Some(g) = record.grading_mut() {
            *g = g.focus(n);
        }
        Study {
            record,
            overlay: Some(pictures.overlay.clone()),
            network_input: Some(pictures.network_input.clone()),
            ..self.clone()
        }
    }
}

/// What the status view reports about the appliance (and the console's `/api/status`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatusInfo {
    /// Model name and variant, e.g. "kneekl-mnv2 int8".
    pub model: String,
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
