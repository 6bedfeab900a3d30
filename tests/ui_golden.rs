//! Golden pictures of every view at every supported panel size: each case is rendered into a
//! `VirtualPanel` and compared pixel for pixel with `tests/fixtures/ui/<case>-<w>x<h>.png`.
//!
//! After an intended change to the views, regenerate the pictures, then look at every one:
//!
//!     KNEESCREEN_BLESS=1 cargo test --test ui_golden
//!
//! Blessing also rewrites the README screenshots in `docs/screenshots/` (320×240 and 800×480).
//! On a mismatch the rendered frame is saved next to the test binary as `<case>-<w>x<h>.actual.png`.
//! All data here is synthetic (a drawn knee, a round heatmap), never a real radiograph.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use embedded_graphics::{pixelcolor::Rgb565, prelude::*, Pixel};
use image::{GrayImage, Luma};
use kneescreen::hw::{Panel, VirtualPanel};
use kneescreen::pipeline::cam::{self, CamGrid};
use kneescreen::pipeline::decode::dicom::identity::PatientIdentity;
use kneescreen::pipeline::KneePictures;
use kneescreen::record::{Knee, KneeGrade, Record, ReferReason, Roi, Side};
use kneescreen::ui::{render, StatusInfo, Study, View, ViewState};

use crate::support::records;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ui");
const SCREENSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots");

/// The panels the appliance supports.
const SIZES: [(u32, u32); 4] = [(240, 240), (320, 240), (480, 320), (800, 480)];
/// The sizes and cases shown in the README.
const SCREENSHOT_SIZES: [(u32, u32); 2] = [(320, 240), (800, 480)];
const SCREENSHOT_CASES: [&str; 5] = ["grade", "overlay", "input", "status", "waiting"];

fn bless() -> bool {
    std::env::var_os("KNEESCREEN_BLESS").is_some_and(|v| v == "1")
}

/// 1 at `t` = 0 falling smoothly to 0 at |t| ≥ 1. The synthetic pictures use only this and plain
/// arithmetic (no sin, exp or powi from the platform's maths library), so they are bit-identical on
/// every platform the tests run on, natively or under qemu.
fn bump(t: f32) -> f32 {
    let s = (1.0 - t * t).max(0.0);
    s * s
}

/// A knee-like picture: the femur's two condyles above a dark joint space, the tibial plateau
/// below, both flaring towards the joint, in soft tissue.
fn knee(x: u32, y: u32, size: u32) -> u8 {
    let (u, v) = (x as f32 / size as f32 - 0.5, y as f32 / size as f32 - 0.5);
    let flare = 1.0 - (v.abs() / 0.35).min(1.0);
    let half_width = 0.2 + 0.18 * flare * flare;
    // The condyles reach lowest at u = ±0.19, with the notch between them.
    let femur = v < -0.06 + 0.04 * bump((u.abs() - 0.19) / 0.19);
    // A flat plateau but for the spines in the middle.
    let tibia = v > 0.035 - 0.02 * bump(u / 0.05);
    let soft = 15.0 + 55.0 * bump(u / 0.6);
    if (femur || tibia) && u.abs() < half_width {
        // The cortex is brighter than the marrow.
        let r = u.abs() / half_width;
        (soft + 90.0 + 80.0 * r * r * r * r * r * r) as u8
    } else {
        soft as u8
    }
}

/// An overlay as the analysis makes it: the X-ray dimmed outside rows 60..164, a round heatmap
/// over that band and the region of interest outlined.
fn fake_overlay() -> (image::RgbImage, Roi) {
    let band = GrayImage::from_fn(224, 104, |x, y| Luma([knee(x, y + 60, 224)]));
    let heat: Vec<f32> = (0..104 * 224)
        .map(|i| {
            let (x, y) = ((i % 224) as f32 - 150.0, (i / 224) as f32 - 50.0);
            bump((x * x + y * y).sqrt() / 60.0)
        })
        .collect();
    let heat = CamGrid::new(224, 104, heat).expect("heat grid matches its size");
    let mut band = cam::overlay(&band, &heat, 0.45).expect("sizes match");
    cam::draw_roi_outline(&mut band, &heat, cam::ROI_THRESHOLD).expect("sizes match");
    let roi = cam::roi(&heat, cam::ROI_THRESHOLD).expect("the blob reaches the threshold");
    let mut out = image::RgbImage::from_fn(224, 224, |x, y| {
        let v = (u16::from(knee(x, y, 224)) * 2 / 5) as u8;
        image::Rgb([v, v, v])
    });
    image::imageops::replace(&mut out, &band, 0, 60);
    (
        out,
        Roi {
            y: roi.y + 60,
            ..roi
        },
    )
}

/// The network input: the joint band stretched to the full height, contrast spread out.
fn fake_network_input() -> GrayImage {
    GrayImage::from_fn(224, 224, |x, y| {
        let v = knee(x, 60 + y * 104 / 224, 224);
        Luma([(v.saturating_sub(30) as u32 * 255 / 220) as u8])
    })
}

fn graded(
    grade: u8,
    name: &str,
    description: &str,
    probabilities: [f32; 5],
    refer: Option<ReferReason>,
) -> Record {
    let (_, roi) = fake_overlay();
    let mut g = records::grading(grade, probabilities);
    g.headline.grade_name = name.to_string();
    g.headline.grade_description = description.to_string();
    g.refer = refer.is_some();
    g.refer_reason = refer;
    g.headline.roi = Some(roi);
    let file = format!("/srv/kneescreen/inbox/knee_kl{grade}_0042.png");
    records::graded(&file, &"0".repeat(64), g)
}

fn study(record: Record) -> Arc<Study> {
    let knees = match record.grading() {
        Some(_) => vec![KneePictures {
            overlay: fake_overlay().0,
            network_input: fake_network_input(),
        }],
        None => Vec::new(),
    };
    Arc::new(Study {
        record,
        film: None,
        knees,
        patient: None,
    })
}

fn status_info() -> StatusInfo {
    StatusInfo {
        model: "kneekl-mnv2 int8".into(),
        head: "shipped".into(),
        queue: 2,
        watched: vec![
            "/srv/kneescreen/inbox".into(),
            "/media/usb0".into(),
            "/media/pi/KINGSTON/scans/2024".into(),
        ],
        last_error: Some(
            "could not write knee_0041.json to /srv/kneescreen/results: no space left on device"
                .into(),
        ),
        free_disk_bytes: Some(150_000_000),
        processed: 41,
        rejected: 3,
        ..StatusInfo::default()
    }
}

/// A bilateral radiograph: two knees found, the right one moderate, the left one referred.
fn film_study() -> Arc<Study> {
    let (w, h) = (640, 400);
    let film = image::RgbImage::from_fn(w, h, |x, y| {
        let v = knee(x % (w / 2), y * (w / 2) / h, w / 2);
        image::Rgb([v, v, v])
    });
    let (overlay, roi) = fake_overlay();
    let mut right = records::grading(1, [0.25, 0.55, 0.15, 0.04, 0.01]);
    right.headline.roi = Some(roi);
    let mut left = records::grading(2, [0.05, 0.30, 0.45, 0.15, 0.05]);
    left.refer = true;
    left.refer_reason = Some(ReferReason::LowConfidence);
    left.headline.roi = Some(roi);
    let knee = |g: &kneescreen::record::Grading, side, x| Knee {
        side,
        bbox: [x, 40, 240, 240],
        detector_score: Some(1.2),
        graded: KneeGrade {
            grade_description: "Grade description.".into(),
            ..g.headline.clone()
        },
        refer: g.refer,
        refer_reason: g.refer_reason,
        warnings: Vec::new(),
    };
    let knees = vec![knee(&right, Side::Right, 40), knee(&left, Side::Left, 360)];
    let mut g = left.clone();
    g.input_width = w;
    g.input_height = h;
    g.headline_knee = 1;
    g.knees = knees;
    let pictures = KneePictures {
        overlay,
        network_input: fake_network_input(),
    };
    Arc::new(Study {
        record: records::graded(
            "/srv/kneescreen/inbox/bilateral_0007.png",
            &"0".repeat(64),
            g,
        ),
        film: Some(film),
        knees: vec![pictures.clone(), pictures],
        patient: None,
    })
}

/// Every case: name and state.
fn cases() -> Vec<(&'static str, ViewState)> {
    let moderate = study(graded(
        3,
        "Moderate",
        "Multiple osteophytes, definite joint-space narrowing, some sclerosis, possible bone-end deformity.",
        [0.02, 0.05, 0.16, 0.63, 0.14],
        None,
    ));
    let mut doubtful = graded(
        1,
        "Doubtful",
        "Doubtful joint-space narrowing and possible osteophytic lipping.",
        [0.30, 0.38, 0.22, 0.08, 0.02],
        Some(ReferReason::LowConfidence),
    );
    if let Some(g) = doubtful.grading_mut() {
        g.warnings.push(
            "image is 1200×600, not square: the model was trained on square single-knee joint crops, \
             so a full or bilateral radiograph may be graded unreliably"
                .into(),
        );
    }
    let doubtful = study(doubtful);
    // A DICOM of another modality: referred however confident the model is.
    let not_radiograph = study(graded(
        2,
        "Minimal",
        "Definite osteophytes and possible joint-space narrowing.",
        [0.02, 0.05, 0.85, 0.06, 0.02],
        Some(ReferReason::NotARadiograph),
    ));
    // Shown only when the configuration enables it: the footer names the patient, not the file.
    let with_patient = Arc::new(Study {
        patient: Some(PatientIdentity {
            name: Some("DOE, JANE".into()),
            id: Some("PID-12345".into()),
            birth_date: Some("1940-01-01".into()),
        }),
        ..(*moderate).clone()
    });
    let rejected = study(Record::rejected(
        "/media/usb0/SCANS/2024-05/knee_left_0012.dcm",
        None,
        "the DICOM file is truncated: its pixel data ends 18 KB early (was the copy interrupted?)",
    ));
    let film = film_study();
    let state = |view, study: Option<&Arc<Study>>| ViewState {
        view,
        study: study.cloned(),
        history_index: 2,
        history_len: if study.is_some() { 12 } else { 0 },
        busy: None,
        knee: 0,
        status: status_info(),
    };
    vec![
        ("grade", state(View::Grade, Some(&moderate))),
        ("overlay", state(View::Overlay, Some(&moderate))),
        ("input", state(View::Input, Some(&moderate))),
        ("status", state(View::Status, Some(&moderate))),
        ("waiting", state(View::Grade, None)),
        ("refer", state(View::Grade, Some(&doubtful))),
        (
            "refer-not-radiograph",
            state(View::Grade, Some(&not_radiograph)),
        ),
        ("rejected", state(View::Grade, Some(&rejected))),
        ("rejected-overlay", state(View::Overlay, Some(&rejected))),
        ("patient", state(View::Grade, Some(&with_patient))),
        ("film", state(View::Film, Some(&film))),
        (
            "film-left-knee",
            ViewState {
                knee: 1,
                ..state(View::Grade, Some(&film))
            },
        ),
        (
            "film-left-overlay",
            ViewState {
                knee: 1,
                ..state(View::Overlay, Some(&film))
            },
        ),
        (
            "busy",
            ViewState {
                busy: Some("/srv/kneescreen/inbox/patient_scan_000123_right_knee.png".into()),
                ..state(View::Grade, Some(&doubtful))
            },
        ),
    ]
}

/// A panel that also counts pixels drawn outside it: views must never rely on clipping.
struct Strict {
    panel: VirtualPanel,
    outside: usize,
}

impl OriginDimensions for Strict {
    fn size(&self) -> Size {
        self.panel.size()
    }
}

impl DrawTarget for Strict {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb565>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        let bounds = self.panel.bounding_box();
        let mut inside = Vec::new();
        for pixel in pixels {
            if bounds.contains(pixel.0) {
                inside.push(pixel);
            } else {
                self.outside += 1;
            }
        }
        self.panel.draw_iter(inside)
    }
}

fn rendered(state: &ViewState, (w, h): (u32, u32), mirror: Option<PathBuf>) -> VirtualPanel {
    let mut strict = Strict {
        panel: VirtualPanel::new(w, h, mirror),
        outside: 0,
    };
    let Ok(()) = render(&mut strict, state);
    assert_eq!(strict.outside, 0, "{w}x{h}: pixels drawn outside the panel");
    strict.panel
}

/// Compares the frame with a golden PNG; returns a description of the difference.
fn compare(panel: &VirtualPanel, golden: &Path) -> Result<(), String> {
    let expected = match image::open(golden) {
        Ok(img) => img.to_rgb8(),
        Err(e) => {
            return Err(format!(
                "{}: {e} (KNEESCREEN_BLESS=1 creates it)",
                golden.display()
            ))
        }
    };
    let actual = panel.to_rgb_image();
    if expected.dimensions() != actual.dimensions() {
        return Err(format!(
            "{}: size {:?}, expected {:?}",
            golden.display(),
            actual.dimensions(),
            expected.dimensions()
        ));
    }
    let differing: Vec<_> = actual
        .enumerate_pixels()
        .filter(|(x, y, p)| expected.get_pixel(*x, *y) != *p)
        .map(|(x, y, _)| (x, y))
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    let name = golden.file_stem().unwrap_or_default().to_string_lossy();
    let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.actual.png"));
    let _ = actual.save(&saved);
    Err(format!(
        "{}: {} pixels differ, first at {:?}; rendered frame saved as {}",
        golden.display(),
        differing.len(),
        differing[0],
        saved.display()
    ))
}

#[test]
fn every_view_at_every_size_matches_its_golden() {
    let mut failures = Vec::new();
    for (case, state) in cases() {
        for size in SIZES {
            let name = format!("{case}-{}x{}.png", size.0, size.1);
            let golden = Path::new(FIXTURES).join(&name);
            let mut panel = rendered(&state, size, bless().then(|| golden.clone()));
            let screenshot = (SCREENSHOT_CASES.contains(&case) && SCREENSHOT_SIZES.contains(&size))
                .then(|| Path::new(SCREENSHOTS).join(&name));
            if bless() {
                panel.flush().expect("golden written");
                if let Some(path) = &screenshot {
                    std::fs::write(path, panel.png()).expect("screenshot written");
                }
            }
            failures.extend(
                std::iter::once(golden)
                    .chain(screenshot)
                    .filter_map(|p| compare(&panel, &p).err()),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn flush_keeps_the_png_and_mirrors_it_atomically() {
    let dir = std::env::temp_dir().join(format!("kneescreen-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("panel.png");
    let (_, state) = cases().swap_remove(0);
    let mut panel = rendered(&state, (240, 240), Some(path.clone()));
    assert!(
        panel.png().is_empty(),
        "nothing is kept before the first flush"
    );
    panel.flush().expect("flush");
    let on_disk = std::fs::read(&path).expect("panel.png written");
    assert_eq!(on_disk, panel.png());
    assert_eq!(
        image::load_from_memory(&on_disk).expect("a PNG").to_rgb8(),
        panel.to_rgb_image()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("panel.png")],
        "no temporary files left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flush_to_an_unwritable_mirror_reports_the_path_and_keeps_the_frame() {
    let path = PathBuf::from("/nonexistent-kneescreen-dir/panel.png");
    let mut panel = rendered(&cases()[0].1, (240, 240), Some(path));
    let err = panel.flush().expect_err("the folder does not exist");
    assert!(
        format!("{err:#}").contains("/nonexistent-kneescreen-dir/panel.png"),
        "{err:#}"
    );
    assert!(
        !panel.png().is_empty(),
        "the web console still gets the frame"
    );
}

#[test]
fn odd_sizes_and_odd_data_draw_without_panicking_or_overflowing() {
    let mut odd = graded(
        4,
        &"Severe ".repeat(20),
        &"word ".repeat(200),
        [f32::NAN, -1.0, 2.0, 0.0, 0.5],
        Some(ReferReason::LowConfidence),
    );
    if let Some(g) = odd.grading_mut() {
        g.headline.probabilities.extend([0.1; 4]);
        g.warnings = vec!["x".repeat(500); 10];
        g.headline.roi = Some(Roi {
            x: 200,
            y: 200,
            width: 500,
            height: 500,
            area_fraction: 1.0,
        });
    }
    let long_status = StatusInfo {
        watched: (0..40)
            .map(|i| format!("/media/usb{i}/{}", "deep/".repeat(30)))
            .collect(),
        last_error: Some("e".repeat(2000)),
        ..status_info()
    };
    for view in [
        View::Film,
        View::Grade,
        View::Overlay,
        View::Input,
        View::Status,
    ] {
        let state = ViewState {
            view,
            study: Some(study(odd.clone())),
            history_index: 99,
            history_len: 3,
            busy: Some("/".repeat(300)),
            status: long_status.clone(),
            knee: 7,
        };
        for size in [
            (1, 1),
            (32, 24),
            (64, 64),
            (128, 160),
            (240, 240),
            (1920, 1080),
        ] {
            rendered(&state, size, None);
        }
    }
    rendered(&ViewState::default(), (0, 0), None);
}

/// With a DICOM node and a PACS configured, the status view adds their rows; without, it is the
/// golden one.
#[test]
fn the_status_view_shows_the_dicom_node_and_the_outbox_when_configured() {
    let plain = ViewState {
        view: View::Status,
        status: StatusInfo {
            watched: vec!["/srv/kneescreen/inbox".into()],
            last_error: None,
            ..status_info()
        },
        ..ViewState::default()
    };
    let mut networked = plain.clone();
    networked.status.dicom = Some(kneescreen::dicom_net::NodeActivity {
        listening: Some("KNEESCREEN on port 11112".into()),
        received: 12,
        ..Default::default()
    });
    let mut with_outbox = networked.clone();
    with_outbox.status.outbox = Some(kneescreen::pacs::outbox::OutboxStatus {
        pacs: "ORTHANC@10.0.0.5:4242".into(),
        pending: 3,
        sent: 40,
        last_error: Some("the PACS cannot be reached".into()),
    });
    let frames: Vec<Vec<u8>> = [&plain, &networked, &with_outbox]
        .iter()
        .map(|s| rendered(s, (320, 240), None).to_rgb_image().into_raw())
        .collect();
    assert_ne!(frames[0], frames[1], "the DICOM row is drawn");
    assert_ne!(frames[1], frames[2], "the PACS row is drawn");
}

#[test]
fn a_short_press_cycles_through_the_four_views() {
    let mut state = ViewState::default();
    state.open(Some(study(graded(
        3,
        "Moderate",
        "",
        [0.02, 0.08, 0.2, 0.6, 0.1],
        None,
    ))));
    let seen: Vec<View> = std::iter::successors(Some(state), |s| {
        let mut s = s.clone();
        s.next();
        Some(s)
    })
    .map(|s| s.view)
    .take(5)
    .collect();
    assert_eq!(
        seen,
        [
            View::Grade,
            View::Overlay,
            View::Input,
            View::Status,
            View::Grade
        ]
    );
}
