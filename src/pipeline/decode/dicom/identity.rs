//! The only reader of patient identity (name, ID, birth date): on request, for the panel and
//! the console when the configuration asks for it; never for records, the journal or logs.

use dicom_dictionary_std::tags;
use serde::Serialize;

use super::structure::*;
use crate::pipeline::decode::limits::Limits;

/// Who a radiograph belongs to. Read only when the configuration asks to show it (on the panel
/// and the console); it is never written to a record, a log or an error message, and its
/// `Debug` form is redacted so it cannot slip into one by accident.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
pub struct PatientIdentity {
    /// PatientName (0010,0010) as "FAMILY, Given Middle".
    pub name: Option<String>,
    /// PatientID (0010,0020).
    pub id: Option<String>,
    /// PatientBirthDate (0010,0030) as YYYY-MM-DD.
    pub birth_date: Option<String>,
}

impl std::fmt::Debug for PatientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientIdentity(redacted)")
    }
}

impl PatientIdentity {
    /// One line for a narrow display, e.g. "DOE, Jane · PID-1 · 1940-01-01"; `None` when the
    /// file names nobody.
    pub fn label(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.name, &self.id, &self.birth_date]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" \u{b7} "))
    }
}

/// Reads the patient's name, ID and birth date from a DICOM file that [`decode_dicom`] accepts
/// the structure of; `None` for anything else. Call it only when showing identity is enabled.
/// It parses the file again (a few milliseconds) rather than having `decode_dicom` return the
/// identity, so that identity never travels through the analysis that writes records and logs.
pub fn read_patient_identity(bytes: &[u8], limits: &Limits) -> Option<PatientIdentity> {
    let (_, _, obj) = open(bytes, limits).ok()?;
    let field = |tag| {
        let value = obj.get(tag)?.to_str().ok()?;
        let value: String = value
            .trim_matches(['\0', ' '])
            .chars()
            .take(64)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        (!value.is_empty()).then_some(value)
    };
    let identity = PatientIdentity {
        name: field(tags::PATIENT_NAME).map(|n| person_name(&n)),
        id: field(tags::PATIENT_ID),
        birth_date: field(tags::PATIENT_BIRTH_DATE).map(|d| iso_date(&d)),
    };
    (identity != PatientIdentity::default()).then_some(identity)
}

/// The elements `wanted` (patient and study attributes, identity among them) as the file holds
/// them, for results sent back into the patient's study in the PACS (`pacs`), at send time only;
/// `None` when the file is not DICOM that [`decode_dicom`] accepts the structure of.
pub fn read_elements(
    bytes: &[u8],
    limits: &Limits,
    wanted: impl IntoIterator<Item = dicom_core::Tag>,
) -> Option<Vec<dicom_object::mem::InMemElement>> {
    let (_, _, obj) = open(bytes, limits).ok()?;
    Some(
        wanted
            .into_iter()
            .filter_map(|t| obj.get(t).cloned())
            .collect(),
    )
}

/// "DOE^JANE^M^^" → "DOE, JANE M" (the first, alphabetic, component group of a PN value).
pub fn person_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or(pn);
    let mut parts = alphabetic.split('^').map(str::trim);
    let family = parts.next().unwrap_or("");
    let given: Vec<&str> = parts.take(2).filter(|p| !p.is_empty()).collect();
    match (family.is_empty(), given.is_empty()) {
        (_, true) => family.to_string(),
        (true, false) => given.join(" "),
        (false, false) => format!("{family}, {}", given.join(" ")),
    }
}

/// "19400101" → "1940-01-01"; anything else as stored.
pub fn iso_date(da: &str) -> String {
    match da.len() == 8 && da.bytes().all(|b| b.is_ascii_digit()) {
        true => format!("{}-{}-{}", &da[..4], &da[4..6], &da[6..]),
        false => da.to_string(),
    }
}
