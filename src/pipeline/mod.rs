//! One image end to end, the one place the stages are chained and timed:
//! read (`input`) → decode (`decode`: PNG, JPEG, DICOM) → find the knee joints (`localise`,
//! `sides`) → per knee (`knee`): preprocess → model → Grad-CAM (`cam`) → pictures (`overlay`)
//! → one record. Data only flows down this list; the record's schema lives in `crate::record`.

pub mod cam; // Grad-CAM from the feature map and the head's weights, heatmap, ROI
pub mod decode; // bytes → 8-bit grey image (+ DICOM facts), within size limits
pub mod digest; // SHA-256 hex of inputs, model files and site heads
pub mod head; // the grading heads on the pooled features (shipped dense, site linear): logits, gradients
pub mod input; // reading an input file safely (size limit, never modified)
pub mod knee; // one knee's crop → preprocess → model → Grad-CAM → grade and pictures
pub mod localise; // the knee joints of a radiograph (HOG + linear SVM), their crops
pub mod model; // model card, tract inference
pub mod overlay; // heatmap over the X-ray, ROI outline, the whole film with knee boxes
pub mod preprocess; // the preprocessing contract (crop60-eqhist-v1), OpenCV-compatible
pub mod screening; // the OA call: ROC of P(KL ≥ 2), its area, the threshold for a target sensitivity
pub mod shape; // numbers whose shape is checked: the error shared by head, Grad-CAM and model
pub mod sides; // which knee is the patient's right or left
pub mod signature; // who made a model: Ed25519 signatures of the card and site heads
pub mod site_head; // a clinic's calibrated linear head: its file, loading the active one

use crate::pipeline::digest::sha256_hex;
use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;

use image::{GrayImage, RgbImage};

use crate::pipeline::decode::dicom::policy;
use crate::pipeline::decode::limits::{DecodeError, Limits};
use crate::pipeline::localise::{Localisation, NotFound};
use crate::pipeline::model::{Classifier, KneeFeatures, ModelError};
use crate::record::{DicomInfo, Grading, ModelId, Outcome, Record, Timings, NOTICE};

/// A finished analysis with the pictures that go with it.
pub struct Analysis {
    pub record: Record,
    /// Each knee's pictures, in the order of the record's `knees`.
    pub knees: Vec<KneePictures>,
    /// The whole radiograph with each knee's box, when knee joints were found in a larger image.
    pub film: Option<RgbImage>,
    /// Each knee's pooled features (what a site head is fitted on), in the same order.
    pub features: Vec<KneeFeatures>,
}

/// The pictures of one knee.
#[derive(Debug, Clone)]
pub struct KneePictures {
    /// The crop (resized to 224×224) with the heatmap over the band the model saw and the ROI.
    pub overlay: RgbImage,
    /// The exact network input before /255.
    pub network_input: GrayImage,
}

impl Analysis {
    pub fn rejected(record: Record) -> Analysis {
        Analysis {
            record,
            knees: Vec::new(),
            film: None,
            features: Vec::new(),
        }
    }

    /// The pictures of the headline knee (the one the record's top-level grade is of).
    pub fn headline(&self) -> Option<&KneePictures> {
        let i = self.record.grading().map_or(0, |g| g.headline_knee);
        self.knees.get(i)
    }
}

/// Why an input could not be graded (a rejected record), as opposed to the model failing.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    NoKnee(#[from] NotFound),
}

/// Why an analysis stopped: the image (rejected, the appliance goes on) or the model (internal).
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<DecodeError> for AnalysisError {
    fn from(e: DecodeError) -> Self {
        AnalysisError::Rejected(e.into())
    }
}

impl From<NotFound> for AnalysisError {
    fn from(e: NotFound) -> Self {
        AnalysisError::Rejected(e.into())
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Analyses the bytes of one file: decode → find the knee joints → grade each knee → one
/// record. `name` and `input_sha256` (of `bytes`, computed once by the caller) are only used in
/// the record.
pub fn analyze(
    bytes: &[u8],
    name: &str,
    input_sha256: &str,
    classifier: &Classifier,
    limits: &Limits,
) -> Result<Analysis, AnalysisError> {
    let start = Instant::now();
    let mut t = Timings::default();

    let t0 = Instant::now();
    let decoded = decode::decode(bytes, limits)?;
    let gray = decoded.gray;
    t.decode = ms(t0);

    let t0 = Instant::now();
    let spacing = decoded.dicom.as_ref().and_then(policy::pixel_spacing_mm);
    let found = localise::localise(&gray, spacing)?;
    let places = sides::placements(&found, gray.dimensions(), decoded.dicom.as_ref());
    t.localize = ms(t0);

    let not_a_radiograph = decoded
        .dicom
        .as_ref()
        .is_some_and(|info| !policy::looks_like_radiograph(info));
    let mut knees = Vec::new();
    let mut pictures = Vec::new();
    let mut features = Vec::new();
    for (joint, place) in found.joints.iter().zip(places) {
        let crop = match found.whole_image_is_one_joint {
            true => Cow::Borrowed(&gray),
            false => Cow::Owned(localise::crop(&gray, &joint.square).0),
        };
        let graded = knee::grade(&crop, place, not_a_radiograph, classifier, &mut t)?;
        knees.push(graded.knee);
        features.push(graded.features);
        pictures.push(KneePictures {
            overlay: graded.overlay,
            network_input: graded.network_input,
        });
    }
    let film = (!found.whole_image_is_one_joint).then(|| overlay::film_image(&gray, &knees));
    t.total = ms(start);

    let card = classifier.card();
    let headline_knee = Grading::headline_of(&knees);
    let head = &knees[headline_knee];
    let referred = knees.iter().find(|k| k.refer);
    let grading = Grading {
        headline: head.graded.clone(),
        refer: referred.is_some(),
        refer_reason: referred.and_then(|k| k.refer_reason),
        warnings: {
            let shape = warnings(&gray, &found, decoded.dicom.as_ref());
            let several = knees.len() > 1;
            let per_knee = knees.iter().flat_map(|k| {
                let side = k.side.label();
                k.warnings.iter().map(move |w| match several {
                    false => w.clone(),
                    true => format!("{side}: {w}"),
                })
            });
            decoded
                .warnings
                .into_iter()
                .chain(shape)
                .chain(per_knee)
                .collect()
        },
        oa_call: classifier.oa_call().cloned(),
        input_width: gray.width(),
        input_height: gray.height(),
        dicom: decoded.dicom,
        model: ModelId {
            name: card.name.clone(),
            variant: classifier.variant.clone(),
            sha256: classifier.sha256.clone(),
            preprocessing: card.preprocessing.clone(),
            head: classifier.head_id(),
            signer: classifier.signer.clone(),
        },
        timings_ms: t,
        notice: NOTICE.to_string(),
        headline_knee,
        knees,
    };
    let record = Record {
        file: name.to_string(),
        input_sha256: Some(input_sha256.to_string()),
        outcome: Outcome::Ok(Box::new(grading)),
    };
    Ok(Analysis {
        record,
        knees: pictures,
        film,
        features,
    })
}

/// Reads and analyses one file; an unreadable or undecodable file becomes a rejected record.
pub fn analyze_file(
    path: &Path,
    classifier: &Classifier,
    limits: &Limits,
) -> Result<Analysis, ModelError> {
    let name = path.display().to_string();
    let bytes = match input::read_input(path, limits.max_file_bytes) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Analysis::rejected(Record::rejected(
                &name,
                None,
                &e.to_string(),
            )))
        }
    };
    let sha256 = sha256_hex(&bytes);
    match analyze(&bytes, &name, &sha256, classifier, limits) {
        Ok(a) => Ok(a),
        Err(AnalysisError::Rejected(e)) => Ok(Analysis::rejected(Record::rejected(
            &name,
            Some(sha256),
            &e.to_string(),
        ))),
        Err(AnalysisError::Model(e)) => Err(e),
    }
}

/// Things a technician should know about how this image fits what the model was trained on.
fn warnings(gray: &GrayImage, found: &Localisation, dicom: Option<&DicomInfo>) -> Vec<String> {
    let (w, h) = gray.dimensions();
    let aspect = w as f32 / h as f32;
    let mut out = Vec::new();
    if !found.whole_image_is_one_joint {
        return out; // the knees were cut out of the larger image
    }
    // A DICOM whose pixel spacing shows more than one knee says so, better than its shape.
    let wide = dicom.and_then(policy::more_than_one_knee);
    let said = wide.is_some();
    out.extend(wide);
    if !(0.8..=1.25).contains(&aspect) && !said {
        out.push(format!(
            "image is {w}×{h}, not square: the model was trained on square single-knee joint crops, \
             so a full or bilateral radiograph may be graded unreliably"
        ));
    }
    out
}
