//! One knee: its crop (8-bit grey, the preprocessing contract's input) → preprocess → model (the
//! crop and its mirror) → Grad-CAM → grade, REFER and the knee's pictures.

use std::time::Instant;

use image::{GrayImage, RgbImage};

use crate::pipeline::model::{Classifier, KneeFeatures, ModelError};
use crate::pipeline::overlay;
use crate::pipeline::preprocess::{self, INPUT_SIZE};
use crate::record::{Knee, KneeGrade, ReferReason, Side, Timings};

/// Where a knee's crop came from.
#[derive(Debug, Clone)]
pub struct Placement {
    pub side: Side,
    /// `[x, y, width, height]` in source pixels.
    pub bbox: [i64; 4],
    /// The detector's score; `None` when the whole image is the crop.
    pub detector_score: Option<f32>,
    /// What a technician should know about the crop (padding, upscaling).
    pub warnings: Vec<String>,
}

/// A graded knee with its pictures.
pub struct GradedKnee {
    pub knee: Knee,
    /// The crop in the model's 224×224 frame with the heatmap over the band the model saw.
    pub overlay: RgbImage,
    /// The exact network input before /255.
    pub network_input: GrayImage,
    /// The pooled features of the crop and its mirror (for site calibration).
    pub features: KneeFeatures,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Grades one knee's crop; `not_a_radiograph` (from the DICOM header) always refers. Adds the
/// time of each stage to `t`.
pub fn grade(
    crop: &GrayImage,
    place: Placement,
    not_a_radiograph: bool,
    classifier: &Classifier,
    t: &mut Timings,
) -> Result<GradedKnee, ModelError> {
    let t0 = Instant::now();
    // The 224×224 frame serves both the network input and the heatmap picture.
    let frame = preprocess::resize_to_input(crop);
    let network_input = preprocess::from_input_frame(&frame);
    t.preprocess += ms(t0);

    let t0 = Instant::now();
    let classification = classifier.classify(&network_input)?;
    t.inference += ms(t0);

    let t0 = Instant::now();
    let (grade, confidence) = classification.top();
    let grid = classification.grad_cam(classifier.head(), grade)?;
    t.cam += ms(t0);

    let t0 = Instant::now();
    let (overlay, roi) = overlay::overlay_image(&frame, &grid)?;
    t.overlay += ms(t0);

    let card = classifier.card();
    let oa_from = card.oa_from_grade as usize;
    let refer_reason = if not_a_radiograph {
        Some(ReferReason::NotARadiograph)
    } else if confidence < card.refer_below_confidence {
        Some(ReferReason::LowConfidence)
    } else {
        None
    };
    let mut warnings = place.warnings;
    let (w, h) = crop.dimensions();
    if w < INPUT_SIZE || h < INPUT_SIZE {
        warnings.push(format!(
            "small image ({w}×{h}): upscaled to 224×224, detail may be missing"
        ));
    }
    let class = card.classes.get(grade);
    let oa_probability: f32 = classification.probabilities.iter().skip(oa_from).sum();
    let knee = Knee {
        side: place.side,
        bbox: place.bbox,
        detector_score: place.detector_score,
        graded: KneeGrade {
            grade: grade as u8,
            grade_name: class.map(|c| c.name.clone()).unwrap_or_default(),
            grade_description: class.map(|c| c.description.clone()).unwrap_or_default(),
            oa: match classifier.oa_call() {
                Some(call) => oa_probability >= call.threshold,
                None => grade >= oa_from,
            },
            oa_probability,
            probabilities: classification.probabilities.clone(),
            confidence,
            cam_grid: grid
                .values()
                .chunks(grid.width())
                .map(<[f32]>::to_vec)
                .collect(),
            roi,
        },
        refer: refer_reason.is_some(),
        refer_reason,
        warnings,
    };
    Ok(GradedKnee {
        knee,
        overlay,
        network_input,
        features: classification.features()?,
    })
}
