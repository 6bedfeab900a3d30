//! The record of one input: what the appliance writes to the results folder, answers on
//! `analyze --json` and `POST /api/analyze`, and shows on the panel and the console. Its JSON
//! keys are an interface (documented in the README): keep them stable. This module imports
//! nothing from the crate, so every stage and every output can depend on it.

use serde::{Deserialize, Serialize};

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub decode: f64,
    /// Finding the knee joints.
    #[serde(default)]
    pub localize: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub cam: f64,
    pub overlay: f64,
    pub total: f64,
}

/// The model that produced a result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelId {
    pub name: String,
    pub variant: String,
    pub sha256: String,
    pub preprocessing: String,
    /// The head that graded: the shipped one, or the clinic's calibrated site head.
    #[serde(default)]
    pub head: HeadId,
    /// Who signed the model card (and so the model files it names); none for a model file given
    /// by path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// Which grading head made a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadId {
    /// `shipped`, or the site head's file, e.g. `site-heads/2026-12-01T14-50-03Z.json`.
    pub name: String,
    /// The site head file's sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Who signed the site head (this device's calibration key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

impl Default for HeadId {
    fn default() -> Self {
        HeadId {
            name: "shipped".into(),
            sha256: None,
            signer: None,
        }
    }
}

/// The record for one input: what became of it (`outcome`), and which input it was.
///
/// In JSON the outcome is flattened into the record: `"status": "ok"` with the grading's keys, or
/// `"status": "rejected"` with a `reason`. A record cannot be both, nor neither.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub file: String,
    /// sha256 of the input's bytes, when they could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of an input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// The image was read and graded.
    Ok(Box<Grading>),
    /// The input could not be graded; `reason` says why in words a technician understands.
    Rejected { reason: String },
}

impl Record {
    /// A record for an input that could not be graded.
    pub fn rejected(file: &str, input_sha256: Option<String>, reason: &str) -> Record {
        Record {
            file: file.to_string(),
            input_sha256,
            outcome: Outcome::Rejected {
                reason: reason.to_string(),
            },
        }
    }

    /// The grading, when the input was graded.
    pub fn grading(&self) -> Option<&Grading> {
        match &self.outcome {
            Outcome::Ok(g) => Some(g),
            Outcome::Rejected { .. } => None,
        }
    }

    /// The grading, to change it, when the input was graded.
    pub fn grading_mut(&mut self) -> Option<&mut Grading> {
        match &mut self.outcome {
            Outcome::Ok(g) => Some(g),
            Outcome::Rejected { .. } => None,
        }
    }

    /// Why the input was rejected, when it was.
    pub fn rejection(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok(_) => None,
            Outcome::Rejected { reason } => Some(reason),
        }
    }

    pub fn status(&self) -> Status {
        match self.outcome {
            Outcome::Ok(_) => Status::Ok,
            Outcome::Rejected { .. } => Status::Rejected,
        }
    }
}

/// An outcome without its content, as the journal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Rejected,
}

/// What the model said about an image that could be read: every knee joint found in it
/// (`knees`), and the headline: the grade fields at the top level are those of the most severe
/// knee (`Grading::headline_of`), so a reader of one grade reads the worst; `refer` and
/// `refer_reason` at the top level are set when any knee is referred.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grading {
    /// The headline knee's grade (`knees[headline_knee]`).
    #[serde(flatten)]
    pub headline: KneeGrade,
    /// A clinician should read this image first; why is in `refer_reason`.
    pub refer: bool,
    /// Why the image is referred, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_reason: Option<ReferReason>,
    pub warnings: Vec<String>,
    /// How OA was called: the threshold on P(KL ≥ 2), the target sensitivity and what it gave
    /// where it was chosen. Absent: OA means grade ≥ 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oa_call: Option<OperatingPoint>,
    pub input_width: u32,
    pub input_height: u32,
    /// Every knee joint graded, in image order (left to right, then top to bottom). Records
    /// written before joints were localised have none.
    #[serde(default)]
    pub knees: Vec<Knee>,
    /// Which of `knees` the top-level grade fields come from.
    #[serde(default)]
    pub headline_knee: usize,
    /// Header facts of a DICOM input (UIDs, laterality, view, pixel spacing); never patient identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomInfo>,
    pub model: ModelId,
    pub timings_ms: Timings,
    pub notice: String,
}

/// The patient's side of a knee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
    /// One knee and nothing in the file says which: not guessed.
    Unknown,
}

impl Side {
    /// The other side; unknown stays unknown.
    pub fn mirrored(self) -> Side {
        match self {
            Side::Right => Side::Left,
            Side::Left => Side::Right,
            Side::Unknown => Side::Unknown,
        }
    }

    /// "R", "L" or "?", for the panel.
    pub fn letter(self) -> &'static str {
        match self {
            Side::Right => "R",
            Side::Left => "L",
            Side::Unknown => "?",
        }
    }

    /// "Right knee", "Left knee" or "Knee, side unknown", for titles.
    pub fn title(self) -> &'static str {
        match self {
            Side::Right => "Right knee",
            Side::Left => "Left knee",
            Side::Unknown => "Knee, side unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Side::Right => "right knee",
            Side::Left => "left knee",
            Side::Unknown => "knee (side unknown)",
        }
    }
}

/// One knee joint of an image and its grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    pub side: Side,
    /// The square cut out for the grader, `[x, y, width, height]` in source pixels; it may reach
    /// past the image's edges (then the crop was padded, and `warnings` says so).
    #[serde(rename = "box")]
    pub bbox: [i64; 4],
    /// The joint detector's score; `None` when the whole image was taken as one joint crop.
    pub detector_score: Option<f32>,
    #[serde(flatten)]
    pub graded: KneeGrade,
    pub refer: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_reason: Option<ReferReason>,
    /// What a technician should know about this knee's crop.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// What the model said about one knee: the grade, its probabilities, the OA call and where the
/// grade came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeGrade {
    /// Kellgren–Lawrence grade 0–4 (arg-max of the probabilities).
    pub grade: u8,
    pub grade_name: String,
    pub grade_description: String,
    /// Calibrated probabilities of KL0..KL4 (from the mean logits of the image and its mirror
    /// when the model card says `flip_average`).
    pub probabilities: Vec<f32>,
    /// Osteoarthritis called: `oa_probability` reached the grading's `oa_call` threshold (or,
    /// for a model without an operating point, grade ≥ 2). It may differ from the grade: the
    /// threshold is set for the screening sensitivity, the grade is the most probable one.
    pub oa: bool,
    /// Probability of OA (sum of KL2..KL4).
    pub oa_probability: f32,
    /// Probability of the predicted grade.
    pub confidence: f32,
    /// Grad-CAM of the predicted grade on the 7×7 feature grid, row-major, before normalisation
    /// (of the mean logit of the image and its mirror, the mirror's map flipped back).
    pub cam_grid: Vec<Vec<f32>>,
    /// The region the grade came from, in the coordinates of the knee's overlay picture.
    pub roi: Option<Roi>,
}

/// The OA call in use (`pipeline::screening`): the threshold and what it gave where it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// OA is called when P(KL ≥ 2) ≥ this.
    pub threshold: f32,
    /// The sensitivity the threshold was chosen for.
    pub target_sensitivity: f64,
    /// Sensitivity and specificity at the threshold on `source`.
    pub sensitivity: f64,
    pub specificity: f64,
    pub source: String,
}

/// What a knee's box and label say at a glance, most pressing first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    /// Referred for a clinician's reading (drawn amber).
    Refer,
    /// Osteoarthritis called (drawn red).
    Oa,
    /// No osteoarthritis called (drawn green).
    NoOa,
}

impl Knee {
    /// The knee's [`Concern`]: a referral outranks the OA call.
    pub fn concern(&self) -> Concern {
        match (self.refer, self.graded.oa) {
            (true, _) => Concern::Refer,
            (false, true) => Concern::Oa,
            (false, false) => Concern::NoOa,
        }
    }

    /// How severe this knee looks, for choosing the headline: the higher grade, then the higher
    /// probability of OA.
    fn severity(&self) -> (u8, f32) {
        (self.graded.grade, self.graded.oa_probability)
    }
}

impl Grading {
    /// This grading seen for knee `n`: its grade, probabilities, REFER, Grad-CAM and warnings at
    /// the top level, its side before the grade's name; the same grading when there is no such knee.
    pub fn focus(&self, n: usize) -> Grading {
        let Some(k) = self.knees.get(n) else {
            return self.clone();
        };
        Grading {
            headline: KneeGrade {
                grade_name: format!("{} - {}", k.side.title(), k.graded.grade_name),
                ..k.graded.clone()
            },
            refer: k.refer,
            refer_reason: k.refer_reason,
            warnings: k.warnings.clone(),
            headline_knee: n,
            ..self.clone()
        }
    }

    /// The index of the most severe knee (the first of equals; 0 when there are none).
    pub fn headline_of(knees: &[Knee]) -> usize {
        (0..knees.len())
            .max_by(|&a, &b| {
                let (ga, pa) = knees[a].severity();
                let (gb, pb) = knees[b].severity();
                ga.cmp(&gb).then(pa.total_cmp(&pb)).then(b.cmp(&a))
            })
            .unwrap_or(0)
    }
}

/// Why a graded image is referred to a clinician before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferReason {
    /// The DICOM header says it is another modality or a colour image: whatever the model says
    /// about it means little.
    NotARadiograph,
    /// The probability of the predicted grade is below the model card's threshold.
    LowConfidence,
}

impl ReferReason {
    /// The reason in a few words, for the panel, the console and the command line.
    pub fn label(self) -> &'static str {
        match self {
            ReferReason::NotARadiograph => "not a greyscale radiograph",
            ReferReason::LowConfidence => "low confidence",
        }
    }
}

/// Shown with every result.
pub const NOTICE: &str = "Screening aid, not a diagnosis: a clinician must read the radiograph.";

/// The header facts kept in the result record. Deliberately nothing that identifies the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DicomInfo {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    /// Transfer syntax UID, e.g. `1.2.840.10008.1.2.1`.
    pub transfer_syntax: String,
    /// E.g. `DX`, `CR`.
    pub modality: Option<String>,
    /// ImageLaterality (0020,0062), else Laterality (0020,0060): `L`, `R`, `B` or `U`.
    pub laterality: Option<String>,
    /// E.g. `AP`, `PA`, `LL`.
    pub view_position: Option<String>,
    /// PatientOrientation (0020,0020): the patient directions of the rows and columns, e.g.
    /// `L\F` (rows run to the patient's left: the image's left is the patient's right).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_orientation: Option<String>,
    /// Row spacing, column spacing (mm), as the file states them.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Which attribute `pixel_spacing_mm` came from.
    pub pixel_spacing_source: Option<SpacingSource>,
    pub rows: u32,
    pub columns: u32,
    pub bits_stored: u16,
    /// Photometric interpretation as stored, e.g. `MONOCHROME1`.
    pub photometric: String,
    pub frames: u32,
}

/// PixelSpacing (0028,0030) is calibrated to the patient; ImagerPixelSpacing (0018,1164) is at
/// the detector (includes the geometric magnification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpacingSource {
    PixelSpacing,
    ImagerPixelSpacing,
}

/// Bounding box of the region of interest, in heatmap pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Pixels of the region (not of its box) over all pixels of the heatmap.
    pub area_fraction: f32,
}
