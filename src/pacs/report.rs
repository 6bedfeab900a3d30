//! The DICOM objects a graded study is sent to the PACS as: a Structured Report of the grading
//! (per knee: KL grade, probabilities, OA call, refer and why; model and head) and a Secondary
//! Capture of each knee's heatmap picture. Both join the source's study (its patient and study
//! attributes are copied in, read from the source only when sending) in series of their own.
//!
//! Every UID is derived from the input's SHA-256 and the model and head that graded it, so a
//! result sent again (after a cut connection, a restart) is the same instance, which the PACS
//! keeps once.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

use crate::dicom_net::scu::Outgoing;
use crate::pipeline::digest::sha256_hex;
use crate::record::{Grading, Knee, Record, NOTICE};

/// Enhanced SR Storage.
pub const ENHANCED_SR: &str = "1.2.840.10008.5.1.4.1.1.88.22";
/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
/// The coding scheme of this device's own concepts (a private, "99"-prefixed designator).
pub const CODING_SCHEME: &str = "99KNEESCREEN";
/// Series numbers of the report and the pictures (high, to sort after the scanner's series).
const SR_SERIES_NUMBER: i32 = 9901;
const SC_SERIES_NUMBER: i32 = 9902;

/// The patient and study attributes copied from the source into each object (type 2 ones are
/// written empty when the source lacks them).
const COPIED: [(Tag, VR, bool); 12] = [
    (tags::PATIENT_NAME, VR::PN, true),
    (tags::PATIENT_ID, VR::LO, true),
    (tags::ISSUER_OF_PATIENT_ID, VR::LO, false),
    (tags::PATIENT_BIRTH_DATE, VR::DA, true),
    (tags::PATIENT_SEX, VR::CS, true),
    (tags::STUDY_INSTANCE_UID, VR::UI, false),
    (tags::STUDY_DATE, VR::DA, true),
    (tags::STUDY_TIME, VR::TM, true),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN, true),
    (tags::STUDY_ID, VR::SH, true),
    (tags::ACCESSION_NUMBER, VR::SH, true),
    (tags::STUDY_DESCRIPTION, VR::LO, false),
];

/// The tags copied from the source (for the reader of the source).
pub fn copied_tags() -> impl Iterator<Item = Tag> {
    COPIED.iter().map(|(tag, _, _)| *tag)
}

/// What the objects are made from.
pub struct Inputs<'a> {
    pub record: &'a Record,
    /// The source's patient and study elements (`copied_tags`), read at send time.
    pub source: Vec<InMemElement>,
    /// Each knee's heatmap picture, in the record's knee order.
    pub pictures: Vec<image::RgbImage>,
    /// Now, as DICOM date (YYYYMMDD) and time (HHMMSS).
    pub date: String,
    pub time: String,
}

/// Why a study cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("the result is not a grading")]
    NotGraded,
    #[error(
        "the source is not a DICOM image with a Study Instance UID, so it has no study to join"
    )]
    NoStudy,
}

/// The report and the pictures of a graded study, ready to send.
pub fn objects(inputs: &Inputs) -> Result<Vec<Outgoing>, ReportError> {
    let grading = inputs.record.grading().ok_or(ReportError::NotGraded)?;
    let has_study = inputs.source.iter().any(|e| {
        e.header().tag == tags::STUDY_INSTANCE_UID
            && e.to_str()
                .is_ok_and(|s| !s.trim_matches(['\0', ' ']).is_empty())
    });
    if !has_study {
        return Err(ReportError::NoStudy);
    }
    let seed = uid_seed(inputs.record, grading);
    let mut out = vec![structured_report(inputs, grading, &seed)];
    for (n, picture) in inputs.pictures.iter().enumerate() {
        out.push(secondary_capture(inputs, grading, &seed, n + 1, picture));
    }
    Ok(out)
}

/// What the UIDs of a result are derived from: the input's bytes and what graded them.
fn uid_seed(record: &Record, grading: &Grading) -> String {
    let head = &grading.model.head;
    format!(
        "{}|{}|{}|{}",
        record.input_sha256.as_deref().unwrap_or(&record.file),
        grading.model.sha256,
        head.name,
        head.sha256.as_deref().unwrap_or("")
    )
}

/// A UID under the 2.25 root (a UUID as a decimal number) from a hash of `seed` and `what`.
pub fn derived_uid(seed: &str, what: &str) -> String {
    let hex = sha256_hex(format!("{seed}|{what}").as_bytes());
    let n = u128::from_str_radix(&hex[..32], 16).expect("hex digits");
    format!("2.25.{n}")
}

fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn int(tag: Tag, vr: VR, value: i32) -> InMemElement {
    let v = match vr {
        VR::US => PrimitiveValue::from(value as u16),
        _ => PrimitiveValue::from(value.to_string()),
    };
    DataElement::new(tag, vr, v)
}

/// The attributes every object shares: SOP common, patient and study (copied), series, equipment.
fn common(
    inputs: &Inputs,
    sop_class: &str,
    sop_instance: &str,
    modality: &str,
    series_uid: &str,
    series_number: i32,
    instance_number: i32,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    for e in [
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        text(tags::SOP_CLASS_UID, VR::UI, sop_class),
        text(tags::SOP_INSTANCE_UID, VR::UI, sop_instance),
        text(tags::INSTANCE_CREATION_DATE, VR::DA, &inputs.date),
        text(tags::INSTANCE_CREATION_TIME, VR::TM, &inputs.time),
        text(tags::MODALITY, VR::CS, modality),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series_uid),
        int(tags::SERIES_NUMBER, VR::IS, series_number),
        text(tags::SERIES_DESCRIPTION, VR::LO, "kneescreen KL screening"),
        int(tags::INSTANCE_NUMBER, VR::IS, instance_number),
        text(tags::MANUFACTURER, VR::LO, "kneescreen"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, "kneescreen"),
        text(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
    ] {
        obj.put(e);
    }
    for (tag, vr, type2) in COPIED {
        match inputs.source.iter().find(|e| e.header().tag == tag) {
            Some(e) => {
                obj.put(e.clone());
            }
            None if type2 => {
                obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
            }
            None => {}
        }
    }
    obj
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        text(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

/// A content item: `relationship`, `value_type` and a concept of this device's scheme.
fn item(value_type: &str, concept: (&str, &str), rest: Vec<InMemElement>) -> InMemDicomObject {
    let mut obj = InMemDicomObject::from_element_iter([
        text(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        text(tags::VALUE_TYPE, VR::CS, value_type),
        sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code(concept.0, CODING_SCHEME, concept.1)],
        ),
    ]);
    for e in rest {
        obj.put(e);
    }
    obj
}

fn text_item(concept: (&str, &str), value: &str) -> InMemDicomObject {
    item("TEXT", concept, vec![text(tags::TEXT_VALUE, VR::UT, value)])
}

/// A numeric content item with a UCUM unit.
fn num_item(concept: (&str, &str), value: f64, unit: (&str, &str)) -> InMemDicomObject {
    let measured = InMemDicomObject::from_element_iter([
        text(tags::NUMERIC_VALUE, VR::DS, &format_ds(value)),
        sequence(
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![code(unit.0, "UCUM", unit.1)],
        ),
    ]);
    item(
        "NUM",
        concept,
        vec![sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured])],
    )
}

/// A decimal string of at most 16 characters.
fn format_ds(value: f64) -> String {
    let s = format!("{value:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.chars().take(16).collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The content of one knee: side, grade, probabilities, OA call, refer.
fn knee_items(knee: &Knee, grading: &Grading) -> Vec<InMemDicomObject> {
    let g = &knee.graded;
    let mut items = vec![
        text_item(("SIDE", "Side"), knee.side.label()),
        num_item(
            ("KL", "Kellgren-Lawrence grade"),
            f64::from(g.grade),
            ("{grade}", "grade"),
        ),
        text_item(
            ("KLTEXT", "Kellgren-Lawrence grade in words"),
            &format!("KL {} ({}): {}", g.grade, g.grade_name, g.grade_description),
        ),
    ];
    for (grade, p) in g.probabilities.iter().enumerate() {
        items.push(num_item(
            (&format!("P{grade}"), &format!("Probability of KL {grade}")),
            f64::from(*p) * 100.0,
            ("%", "percent"),
        ));
    }
    let threshold = grading
        .oa_call
        .as_ref()
        .map(|op| format!(", called from {:.3}", op.threshold))
        .unwrap_or_default();
    items.push(text_item(
        ("OA", "Osteoarthritis (KL 2 or more)"),
        &format!(
            "{} (probability {:.3}{threshold})",
            yes_no(g.oa),
            g.oa_probability
        ),
    ));
    let refer = match knee.refer_reason {
        Some(r) if knee.refer => format!("yes: {}", r.label()),
        _ => yes_no(knee.refer).to_string(),
    };
    items.push(text_item(("REFER", "Refer to a clinician"), &refer));
    for w in &knee.warnings {
        items.push(text_item(("WARN", "Warning"), w));
    }
    items
}

fn structured_report(inputs: &Inputs, grading: &Grading, seed: &str) -> Outgoing {
    let sop_instance = derived_uid(seed, "sr");
    let mut obj = common(
        inputs,
        ENHANCED_SR,
        &sop_instance,
        "SR",
        &derived_uid(seed, "sr-series"),
        SR_SERIES_NUMBER,
        1,
    );
    let mut content = vec![text_item(("NOTICE", "Notice"), NOTICE)];
    let refer = match grading.refer_reason {
        Some(r) if grading.refer => format!("yes: {}", r.label()),
        _ => yes_no(grading.refer).to_string(),
    };
    content.push(text_item(("REFER", "Refer to a clinician"), &refer));
    // Records always list their knees; an older or hand-made one may hold only the headline.
    let headline_only = [Knee {
        side: crate::record::Side::Unknown,
        bbox: [
            0,
            0,
            grading.input_width.into(),
            grading.input_height.into(),
        ],
        detector_score: None,
        graded: grading.headline.clone(),
        refer: grading.refer,
        refer_reason: grading.refer_reason,
        warnings: Vec::new(),
    }];
    let knees = match grading.knees.is_empty() {
        true => &headline_only[..],
        false => &grading.knees[..],
    };
    for knee in knees {
        let mut container = item("CONTAINER", ("KNEE", "Knee"), vec![]);
        container.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
        container.put(sequence(tags::CONTENT_SEQUENCE, knee_items(knee, grading)));
        content.push(container);
    }
    for w in &grading.warnings {
        content.push(text_item(("WARN", "Warning"), w));
    }
    let model = &grading.model;
    content.push(text_item(
        ("MODEL", "Model"),
        &format!(
            "{} {} (sha256 {}), preprocessing {}",
            model.name, model.variant, model.sha256, model.preprocessing
        ),
    ));
    let head = match &model.head.sha256 {
        Some(sha) => format!("{} (sha256 {sha})", model.head.name),
        None => model.head.name.clone(),
    };
    content.push(text_item(("HEAD", "Grading head"), &head));
    for e in [
        text(tags::CONTENT_DATE, VR::DA, &inputs.date),
        text(tags::CONTENT_TIME, VR::TM, &inputs.time),
        text(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        sequence(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]),
        sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]),
        text(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code("18748-4", "LN", "Diagnostic imaging report")],
        ),
        text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        sequence(tags::CONTENT_SEQUENCE, content),
    ] {
        obj.put(e);
    }
    if let Some(evidence) = source_reference(grading) {
        obj.put(sequence(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence],
        ));
    }
    Outgoing {
        sop_class_uid: ENHANCED_SR.into(),
        sop_instance_uid: sop_instance,
        data_set: obj,
    }
}

/// Pixel bytes padded to an even length, as DICOM values must be.
fn even(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// The source image as a study / series / instance reference, when its header named them.
fn source_reference(grading: &Grading) -> Option<InMemDicomObject> {
    let d = grading.dicom.as_ref()?;
    let instance = InMemDicomObject::from_element_iter([
        text(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            d.sop_class_uid.as_deref()?,
        ),
        text(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            d.sop_instance_uid.as_deref()?,
        ),
    ]);
    let series = InMemDicomObject::from_element_iter([
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            d.series_instance_uid.as_deref()?,
        ),
        sequence(tags::REFERENCED_SOP_SEQUENCE, vec![instance]),
    ]);
    Some(InMemDicomObject::from_element_iter([
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            d.study_instance_uid.as_deref()?,
        ),
        sequence(tags::REFERENCED_SERIES_SEQUENCE, vec![series]),
    ]))
}

fn secondary_capture(
    inputs: &Inputs,
    grading: &Grading,
    seed: &str,
    n: usize,
    picture: &image::RgbImage,
) -> Outgoing {
    let sop_instance = derived_uid(seed, &format!("sc{n}"));
    let mut obj = common(
        inputs,
        SECONDARY_CAPTURE,
        &sop_instance,
        "OT",
        &derived_uid(seed, "sc-series"),
        SC_SERIES_NUMBER,
        n as i32,
    );
    let side = grading.knees.get(n - 1).map_or("knee", |k| k.side.label());
    for e in [
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"),
        DataElement::new(tags::PATIENT_ORIENTATION, VR::CS, PrimitiveValue::Empty),
        text(
            tags::DERIVATION_DESCRIPTION,
            VR::ST,
            &format!("Grad-CAM heatmap of the {side} over its network input (kneescreen)"),
        ),
        text(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        int(tags::SAMPLES_PER_PIXEL, VR::US, 3),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        int(tags::PLANAR_CONFIGURATION, VR::US, 0),
        int(tags::ROWS, VR::US, picture.height() as i32),
        int(tags::COLUMNS, VR::US, picture.width() as i32),
        int(tags::BITS_ALLOCATED, VR::US, 8),
        int(tags::BITS_STORED, VR::US, 8),
        int(tags::HIGH_BIT, VR::US, 7),
        int(tags::PIXEL_REPRESENTATION, VR::US, 0),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(even(picture.as_raw())),
        ),
    ] {
        obj.put(e);
    }
    Outgoing {
        sop_class_uid: SECONDARY_CAPTURE.into(),
        sop_instance_uid: sop_instance,
        data_set: obj,
    }
}
