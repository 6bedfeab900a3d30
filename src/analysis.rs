//! One image end to end: decode → preprocess → model → Grad-CAM → the result record and its
//! pictures (overlay, network input). The record's JSON keys are an interface: keep them stable.

use std::path::Path;
use std::time::Instant;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::cam::{self, CamError, CamGrid, Roi, ROI_THRESHOLD};
use crate::decode::{self, DecodeError, Limits};
use crate::model::{self, Classifier, ModelError};
use crate::preprocess::{self, CROP_BOTTOM, CROP_TOP, INPUT_SIZE};
use crate::results;

/// How strongly the heatmap is blended over the X-ray.
const HEAT_ALPHA: f32 = 0.45;

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub decode: f64,
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
}

/// The record for one input: `status` "ok" with the analysis, or "rejected" with a reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub file: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub result: Option<Grading>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Rejected,
}

/// What the model said about an image that could be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grading {
    /// Kellgren–Lawrence grade 0–4 (arg-max of the probabilities).
    pub grade: u8,
    pub grade_name: String,
    pub grade_description: String,
    /// Calibrated probabilities of KL0..KL4 (from the mean logits of the image and its mirror
    /// when the model card says `flip_average`).
    pub probabilities: Vec<f32>,
    /// Osteoarthritis: grade ≥ 2.
    pub oa: bool,
    /// Probability of OA (sum of KL2..KL4).
    pub oa_probability: f32,
    /// Probability of the predicted grade.
    pub confidence: f32,
    /// A clinician should read this image first; why is in `refer_reason`.
    pub refer: bool,
    /// Why the image is referred, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_reason: Option<ReferReason>,
    pub warnings: Vec<String>,
    /// Grad-CAM of the predicted grade on the 7×7 feature grid, row-major, before normalisation
    /// (of the mean logit of the image and its mirror, the mirror's map flipped back).
    pub cam_grid: Vec<Vec<f32>>,
    /// The region the grade came from, in the coordinates of the overlay image.
    pub roi: Option<Roi>,
    pub input_width: u32,
    pub input_height: u32,
    /// Header facts of a DICOM input (UIDs, laterality, view, pixel spacing); never patient identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dicom: Option<crate::dicom::DicomInfo>,
    pub model: ModelId,
    pub timings_ms: Timings,
    pub notice: String,
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

/// A finished analysis with the pictures that go with it.
pub struct Analysis {
    pub record: Record,
    /// The X-ray (resized to 224×224) with the heatmap over the band the model saw and the ROI outline.
    pub overlay: Option<RgbImage>,
    /// The exact network input before /255.
    pub network_input: Option<GrayImage>,
}

impl Analysis {
    pub fn rejected(record: Record) -> Analysis {
        Analysis {
            record,
            overlay: None,
            network_input: None,
        }
    }
}

/// Why an analysis stopped: the image (rejected, the appliance goes on) or the model (internal).
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Rejected(#[from] DecodeError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Analyses the bytes of one file. `name` is only used in the record.
pub fn analyze(
    bytes: &[u8],
    name: &str,
    classifier: &Classifier,
    limits: &Limits,
) -> Result<Analysis, AnalysisError> {
    let start = Instant::now();
    let mut t = Timings::default();
    let input_sha256 = Some(model::sha256_hex(bytes));

    let t0 = Instant::now();
    let decoded = decode::decode(bytes, limits)?;
    let gray = decoded.gray;
    t.decode = ms(t0);

    let t0 = Instant::now();
    let network_input = preprocess::preprocess(&gray);
    t.preprocess = ms(t0);

    let t0 = Instant::now();
    let classification = classifier.classify(&network_input)?;
    t.inference = ms(t0);

    let t0 = Instant::now();
    let (grade, confidence) = classification.top();
    let grid = classification
        .grad_cam(classifier.head(), grade)
        .map_err(ModelError::from)?;
    t.cam = ms(t0);

    let t0 = Instant::now();
    let (overlay, roi) = overlay_image(&gray, &grid).map_err(ModelError::from)?;
    t.overlay = ms(t0);
    t.total = ms(start);

    let card = classifier.card();
    let info = card.classes.get(grade);
    let oa_from = card.oa_from_grade as usize;
    let refer_reason = if decoded
        .dicom
        .as_ref()
        .is_some_and(|info| !crate::dicom::looks_like_radiograph(info))
    {
        Some(ReferReason::NotARadiograph)
    } else if confidence < card.refer_below_confidence {
        Some(ReferReason::LowConfidence)
    } else {
        None
    };
    let grading = Grading {
        grade: grade as u8,
        grade_name: info.map(|c| c.name.clone()).unwrap_or_default(),
        grade_description: info.map(|c| c.description.clone()).unwrap_or_default(),
        oa: grade >= oa_from,
        oa_probability: classification.probabilities.iter().skip(oa_from).sum(),
        probabilities: classification.probabilities.clone(),
        confidence,
        refer: refer_reason.is_some(),
        refer_reason,
        warnings: {
            let shape = warnings(&gray, decoded.dicom.as_ref());
            decoded.warnings.into_iter().chain(shape).collect()
        },
        cam_grid: grid
            .values()
            .chunks(grid.width())
            .map(<[f32]>::to_vec)
            .collect(),
        roi,
        input_width: gray.width(),
        input_height: gray.height(),
        dicom: decoded.dicom,
        model: ModelId {
            name: card.name.clone(),
            variant: classifier.variant.clone(),
            sha256: classifier.sha256.clone(),
            preprocessing: card.preprocessing.clone(),
        },
        timings_ms: t,
        notice: NOTICE.to_string(),
    };
    let record = Record {
        file: name.to_string(),
        status: Status::Ok,
        reason: None,
        input_sha256,
        result: Some(grading),
    };
    Ok(Analysis {
        record,
        overlay: Some(overlay),
        network_input: Some(network_input),
    })
}

/// Reads and analyses one file; an unreadable or undecodable file becomes a rejected record.
pub fn analyze_path(
    path: &Path,
    classifier: &Classifier,
    limits: &Limits,
) -> Result<Analysis, ModelError> {
    let name = path.display().to_string();
    let bytes = match results::read_input(path, limits.max_file_bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Analysis::rejected(rejected(&name, None, &e.to_string()))),
    };
    match analyze(&bytes, &name, classifier, limits) {
        Ok(a) => Ok(a),
        Err(AnalysisError::Rejected(e)) => Ok(Analysis::rejected(rejected(
            &name,
            Some(&bytes),
            &e.to_string(),
        ))),
        Err(AnalysisError::Model(e)) => Err(e),
    }
}

/// The record for an input that could not be analysed.
pub fn rejected(name: &str, bytes: Option<&[u8]>, reason: &str) -> Record {
    Record {
        file: name.to_string(),
        status: Status::Rejected,
        reason: Some(reason.to_string()),
        input_sha256: bytes.map(model::sha256_hex),
        result: None,
    }
}

/// Things a technician should know about how this image fits what the model was trained on.
fn warnings(gray: &GrayImage, dicom: Option<&crate::dicom::DicomInfo>) -> Vec<String> {
    let (w, h) = gray.dimensions();
    let mut out = Vec::new();
    if w < INPUT_SIZE || h < INPUT_SIZE {
        out.push(format!(
            "small image ({w}×{h}): upscaled to 224×224, detail may be missing"
        ));
    }
    let aspect = w as f32 / h as f32;
    // A DICOM whose pixel spacing shows more than one knee has said so already, and better.
    let said = dicom.is_some_and(|d| crate::dicom::more_than_one_knee(d).is_some());
    if !(0.8..=1.25).contains(&aspect) && !said {
        out.push(format!(
            "image is {w}×{h}, not square: the model was trained on square single-knee joint crops, \
             so a full or bilateral radiograph may be graded unreliably"
        ));
    }
    out
}

/// The X-ray resized to the model's 224×224 frame, dimmed outside the band the model sees
/// (rows 60..164), with the Grad-CAM heatmap over that band and the ROI outlined.
pub fn overlay_image(
    gray: &GrayImage,
    grid: &CamGrid,
) -> Result<(RgbImage, Option<Roi>), CamError> {
    let frame = preprocess::resize_to_input(gray);
    let band_h = CROP_BOTTOM - CROP_TOP;
    let heat = cam::upsample(grid, INPUT_SIZE, band_h);
    let band = image::imageops::crop_imm(&frame, 0, CROP_TOP, INPUT_SIZE, band_h).to_image();
    let mut band_rgb = cam::overlay(&band, &heat, HEAT_ALPHA)?;
    cam::draw_roi_outline(&mut band_rgb, &heat, ROI_THRESHOLD)?;
    let mut out = RgbImage::from_fn(INPUT_SIZE, INPUT_SIZE, |x, y| {
        let v = (frame.get_pixel(x, y)[0] as u16 * 2 / 5) as u8; // outside the band: dimmed
        image::Rgb([v, v, v])
    });
    image::imageops::replace(&mut out, &band_rgb, 0, CROP_TOP as i64);
    let roi = cam::roi(&heat, ROI_THRESHOLD).map(|r| Roi {
        y: r.y + CROP_TOP,
        ..r
    });
    Ok((out, roi))
}
