//! Reading single attributes of a parsed data set: text, numbers, items of sequences.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub type Element = dicom_object::mem::InMemElement;

/// An attribute at the top level, else in the first item of `macro_seq` in the shared, then
/// the first frame's, functional groups (enhanced multi-frame objects keep windows there).
pub fn lookup(obj: &InMemDicomObject, tag: Tag, macro_seq: Option<Tag>) -> Option<&Element> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    let macro_seq = macro_seq?;
    [
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
    ]
    .into_iter()
    .find_map(|groups| {
        first_item(obj, groups)
            .and_then(|g| first_item(g, macro_seq))
            .and_then(|m| m.get(tag))
    })
}

pub fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.get(seq)?.items()?.first()
}

/// A short text attribute, trimmed, printable ASCII only, at most 64 characters.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    non_empty(&value)
}

pub fn non_empty(value: &str) -> Option<String> {
    let value = value.trim_matches(['\0', ' ']);
    (!value.is_empty()).then(|| printable(value, 64))
}

pub fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

pub fn float(e: Option<&Element>) -> Option<f64> {
    e?.to_multi_float64()
        .ok()?
        .first()
        .copied()
        .filter(|v| v.is_finite())
}
