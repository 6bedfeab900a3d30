//! Sample records for the tests that draw or serve them without running the model.

use kneescreen::record::{Grading, KneeGrade, ModelId, Outcome, Record, NOTICE};

/// A grading with `probabilities` (KL0..KL4), the grade they give and plain values elsewhere;
/// tests change the fields they care about.
pub fn grading(grade: u8, probabilities: [f32; 5]) -> Grading {
    Grading {
        headline: KneeGrade {
            grade,
            grade_name: format!("KL{grade}"),
            grade_description: String::new(),
            probabilities: probabilities.to_vec(),
            oa: grade >= 2,
            oa_probability: probabilities[2..].iter().sum(),
            confidence: probabilities[usize::from(grade)],
            cam_grid: vec![vec![0.0; 7]; 7],
            roi: None,
        },
        refer: false,
        refer_reason: None,
        warnings: Vec::new(),
        oa_call: None,
        input_width: 224,
        input_height: 224,
        knees: Vec::new(),
        headline_knee: 0,
        dicom: None,
        model: ModelId {
            name: "kneekl-mnv2".into(),
            variant: "int8".into(),
            sha256: "0".repeat(64),
            preprocessing: "crop60-eqhist-v1".into(),
            head: Default::default(),
            signer: Some("kneescreen test key (debug builds only) (key f8b4e99d4ef98826)".into()),
        },
        timings_ms: Default::default(),
        notice: NOTICE.to_string(),
    }
}

/// The record of a graded input.
pub fn graded(file: &str, input_sha256: &str, grading: Grading) -> Record {
    Record {
        file: file.to_string(),
        input_sha256: Some(input_sha256.to_string()),
        outcome: Outcome::Ok(Box::new(grading)),
    }
}
