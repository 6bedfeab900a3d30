//! The objects a graded study is sent to the PACS as (`pacs::report`): they read back as DICOM
//! with the source's patient and study, the grading in the SR's content, the heatmap picture in
//! the Secondary Capture, and the same UIDs every time they are made.

use crate::support::records;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use kneescreen::pacs::report::{self, Inputs, ReportError, ENHANCED_SR, SECONDARY_CAPTURE};

fn source(study: Option<&str>) -> Vec<dicom_object::mem::InMemElement> {
    let mut v = vec![
        DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("MÜLLER^ANNA"),
        ),
        DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("P-1")),
        DataElement::new(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::from("A-9")),
    ];
    if let Some(uid) = study {
        v.push(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid),
        ));
    }
    v
}

fn texts(obj: &InMemDicomObject, out: &mut Vec<String>) {
    for e in obj {
        if let Some(items) = e.items() {
            for item in items {
                texts(item, out);
            }
        } else if let Ok(s) = e.to_str() {
            out.push(s.to_string());
        }
    }
}

#[test]
fn a_graded_study_becomes_a_report_and_a_picture_in_its_study() {
    let record = records::graded(
        "/in/knee.dcm",
        "ab12",
        records::grading(3, [0.02, 0.05, 0.13, 0.7, 0.1]),
    );
    let picture = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let inputs = Inputs {
        record: &record,
        source: source(Some("1.2.3")),
        pictures: vec![picture.clone()],
        date: "20261202".into(),
        time: "101500".into(),
    };
    let objects = report::objects(&inputs).unwrap();
    assert_eq!(objects.len(), 2);
    let (sr, sc) = (&objects[0], &objects[1]);
    assert_eq!(
        (sr.sop_class_uid.as_str(), sc.sop_class_uid.as_str()),
        (ENHANCED_SR, SECONDARY_CAPTURE)
    );
    for o in &objects {
        // Encoded and read back: what the PACS receives.
        let ts = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut bytes = Vec::new();
        o.data_set
            .write_dataset_with_ts_cs(
                &mut bytes,
                &ts,
                dicom_encoding::text::SpecificCharacterSet::ISO_IR_192,
            )
            .unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts).unwrap();
        let s = |tag| {
            back.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string()
        };
        assert_eq!(s(tags::STUDY_INSTANCE_UID), "1.2.3");
        assert_eq!(s(tags::PATIENT_NAME), "MÜLLER^ANNA");
        assert_eq!(s(tags::ACCESSION_NUMBER), "A-9");
        assert_eq!(s(tags::SOP_INSTANCE_UID), o.sop_instance_uid);
        assert!(o.sop_instance_uid.starts_with("2.25.") && o.sop_instance_uid.len() <= 64);
        assert!(back.element(tags::SERIES_INSTANCE_UID).is_ok());
        assert!(
            back.element(tags::PATIENT_BIRTH_DATE).is_ok(),
            "type 2: present, empty"
        );
    }
    let mut content = Vec::new();
    texts(&sr.data_set, &mut content);
    let all = content.join("\n");
    assert!(all.contains("KL 3 ("), "{all}");
    assert!(
        all.contains("Probability of KL 3") && all.contains("\n70\n"),
        "{all}"
    );
    assert!(all.contains("Screening aid"), "{all}");
    assert!(
        all.contains(&record.grading().unwrap().model.sha256),
        "{all}"
    );
    let pixels = sc
        .data_set
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(&pixels[..45], picture.as_raw().as_slice());
    assert_eq!(pixels.len(), 46, "padded to an even length");
    assert_eq!(
        sc.data_set
            .element(tags::ROWS)
            .unwrap()
            .to_int::<u16>()
            .unwrap(),
        3
    );

    // Made again (a retry, a restart): the same instances.
    let again = report::objects(&inputs).unwrap();
    let uids = |v: &[kneescreen::dicom_net::scu::Outgoing]| -> Vec<String> {
        v.iter().map(|o| o.sop_instance_uid.clone()).collect()
    };
    assert_eq!(uids(&again), uids(&objects));
    // Another input: other instances.
    let other = records::graded(
        "/in/knee.dcm",
        "cd34",
        records::grading(3, [0.02, 0.05, 0.13, 0.7, 0.1]),
    );
    let other_uids = uids(
        &report::objects(&Inputs {
            record: &other,
            ..inputs_clone(&inputs)
        })
        .unwrap(),
    );
    assert!(other_uids.iter().all(|u| !uids(&objects).contains(u)));
}

fn inputs_clone<'a>(i: &Inputs<'a>) -> Inputs<'a> {
    Inputs {
        record: i.record,
        source: i.source.clone(),
        pictures: i.pictures.clone(),
        date: i.date.clone(),
        time: i.time.clone(),
    }
}

#[test]
fn a_source_without_a_study_cannot_be_sent() {
    let record = records::graded(
        "/in/knee.png",
        "ab12",
        records::grading(1, [0.2, 0.6, 0.1, 0.05, 0.05]),
    );
    let inputs = Inputs {
        record: &record,
        source: source(None),
        pictures: vec![],
        date: "20261202".into(),
        time: "101500".into(),
    };
    assert_eq!(report::objects(&inputs).unwrap_err(), ReportError::NoStudy);
}

#[test]
fn uids_are_decimal_under_the_2_25_root() {
    let uid = report::derived_uid("seed", "sr");
    let digits = uid.strip_prefix("2.25.").unwrap();
    assert!(digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'));
    assert!(uid.len() <= 64);
    assert_ne!(uid, report::derived_uid("seed", "sc1"));
}
