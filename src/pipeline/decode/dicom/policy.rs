//! Clinical policy on the header facts: is this a radiograph the model can say anything about,
//! how large is a pixel, and does the image show more than one knee.

use crate::record::{DicomInfo, Side};

/// Modalities a knee radiograph arrives as: computed and digital radiography, radiographic
/// imaging, and "other" (digitised film is often stored as a secondary capture with OT).
pub const RADIOGRAPH_MODALITIES: [&str; 4] = ["CR", "DX", "RG", "OT"];

/// Whether the header allows a greyscale radiograph: a radiograph modality (or none stated) and
/// a monochrome image. When not, the image is still graded, but the result asks for a clinician.
pub fn looks_like_radiograph(info: &DicomInfo) -> bool {
    let modality_ok = info
        .modality
        .as_deref()
        .is_none_or(|m| RADIOGRAPH_MODALITIES.contains(&m));
    modality_ok && info.photometric.starts_with("MONOCHROME")
}

/// A warning when the header says the image is not a radiograph (an MR slice, a CT, an
/// ultrasound, a colour photograph): it is still graded, but the grade means little.
pub fn not_a_radiograph(info: &DicomInfo) -> Option<String> {
    if looks_like_radiograph(info) {
        return None;
    }
    Some(match info.modality.as_deref() {
        Some(m) if !RADIOGRAPH_MODALITIES.contains(&m) => format!(
            "the DICOM modality is {m}, not a radiograph (CR/DX): the model grades knee X-rays only, \
             so this grade is not meaningful"
        ),
        _ => format!(
            "the DICOM image is in colour ({}): knee X-rays are greyscale, so this may not be a \
             radiograph and the grade may not be meaningful",
            info.photometric
        ),
    })
}

/// A single-knee joint crop is about 10–15 cm across; wider than this is a full or bilateral
/// radiograph.
pub const SINGLE_KNEE_MAX_MM: f64 = 200.0;

/// A warning when the pixel spacing shows the image covers more than one knee joint.
pub fn more_than_one_knee(info: &DicomInfo) -> Option<String> {
    let [row_mm, column_mm] = info.pixel_spacing_mm?;
    let (width, height) = (
        f64::from(info.columns) * column_mm,
        f64::from(info.rows) * row_mm,
    );
    (width > SINGLE_KNEE_MAX_MM || height > SINGLE_KNEE_MAX_MM).then(|| {
        format!(
            "the image covers {:.0} × {:.0} cm: the model was trained on single-knee joint crops, \
             so a full or bilateral radiograph may be graded unreliably; crop one knee joint",
            width / 10.0,
            height / 10.0
        )
    })
}

/// Millimetres per pixel, when the file states it (the mean of row and column spacing).
pub fn pixel_spacing_mm(info: &DicomInfo) -> Option<f32> {
    let [row_mm, column_mm] = info.pixel_spacing_mm?;
    let mm = (row_mm + column_mm) / 2.0;
    (mm.is_finite() && mm > 0.0).then_some(mm as f32)
}

/// The patient's side the header names for the whole image (`R` or `L` in ImageLaterality or
/// Laterality); `None` for both (`B`), unpaired (`U`) or unstated.
pub fn laterality(info: &DicomInfo) -> Option<Side> {
    match info.laterality.as_deref()?.trim() {
        "R" => Some(Side::Right),
        "L" => Some(Side::Left),
        _ => None,
    }
}

/// Whether the image's rows run towards the patient's right (PatientOrientation starting with
/// `R`): the image is mirrored against the standard AP/PA view, whose rows run to the left.
pub fn rows_run_to_patients_right(info: &DicomInfo) -> bool {
    info.patient_orientation
        .as_deref()
        .and_then(|o| o.split('\\').next())
        .is_some_and(|row| row.trim().starts_with('R'))
}
