//! Which knee is the patient's right or left, and where each crop sits in the image.
//!
//! On a standard AP/PA view the image's left is the patient's right. The DICOM header overrides
//! that: PatientOrientation whose rows run to the patient's right mirrors it, and
//! ImageLaterality/Laterality `R` or `L` names the side of a single knee. A single knee that
//! nothing names is "side unknown", never guessed.

use crate::pipeline::decode::dicom::policy;
use crate::pipeline::knee::Placement;
use crate::pipeline::localise::Localisation;
use crate::record::DicomInfo;

/// Said of a knee whose crop had to be padded.
pub const PADDED_WARNING: &str =
    "the knee lies near the image's edge: its crop was padded by repeating the edge pixels";

/// Each joint's side, box and warnings, in the order of `found.joints`.
pub fn placements(
    found: &Localisation,
    (width, height): (u32, u32),
    dicom: Option<&DicomInfo>,
) -> Vec<Placement> {
    let mirrored = dicom.is_some_and(policy::rows_run_to_patients_right);
    let named = dicom.and_then(policy::laterality);
    let single = found.joints.len() == 1;
    found
        .joints
        .iter()
        .map(|joint| {
            let side = match named {
                Some(side) if single => side,
                _ if mirrored => joint.side.mirrored(),
                _ => joint.side,
            };
            let sq = joint.square;
            let (x, y, s) = (i64::from(sq.x), i64::from(sq.y), i64::from(sq.side));
            let inside = x >= 0 && y >= 0 && x + s <= width.into() && y + s <= height.into();
            let whole = found.whole_image_is_one_joint;
            Placement {
                side,
                bbox: match whole {
                    true => [0, 0, width.into(), height.into()],
                    false => [x, y, s, s],
                },
                detector_score: (!whole).then_some(joint.score),
                warnings: match whole || inside {
                    true => Vec::new(),
                    false => vec![PADDED_WARNING.to_string()],
                },
            }
        })
        .collect()
}
