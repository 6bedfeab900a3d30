//! The knee joint localiser: HOG equal to OpenCV's (golden fixtures made with cv2 by
//! `scripts/make_hog_fixtures.py`), behaviour on drawn images, and — when the development images
//! in `../shared/data` are present (or `$KNEESCREEN_SHARED_DATA`) — on real radiographs and crops.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use kneescreen::pipeline::localise::{crop, hog_descriptor, localise, NotFound, Square};
use kneescreen::record::Side;
use kneescreen::tools::synthetic::XorShift32;

use crate::support::util::{self, knee_film};

#[test]
fn hog_matches_opencv() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hog");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/hog-golden.json")).unwrap())
            .unwrap();
    let descriptors = golden["descriptors"].as_object().unwrap();
    assert!(descriptors.len() >= 5);
    for (name, expected) in descriptors {
        let img = image::open(format!("{dir}/hog-{name}.png"))
            .unwrap()
            .to_luma8();
        let got = hog_descriptor(&img);
        let expected: Vec<f32> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}");
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: max abs difference {worst}");
        println!("{name}: max abs difference {worst:e}");
    }
}

#[test]
fn two_drawn_knees_are_two_joints_right_on_the_image_left() {
    let img = knee_film(
        1400,
        1000,
        &[(380.0, 500.0, 420.0, false), (1020.0, 500.0, 420.0, true)],
        1,
    );
    let loc = localise(&img, None).expect("two knees");
    println!("{loc:?}");
    assert!(!loc.whole_image_is_one_joint);
    assert_eq!(loc.joints.len(), 2, "{loc:?}");
    let (right, left) = (&loc.joints[0], &loc.joints[1]);
    assert_eq!(right.side, Side::Right);
    assert_eq!(left.side, Side::Left);
    assert!(
        (right.centre.0 - 380.0).abs() < 80.0 && (right.centre.1 - 500.0).abs() < 80.0,
        "{right:?}"
    );
    assert!(
        (left.centre.0 - 1020.0).abs() < 80.0 && (left.centre.1 - 500.0).abs() < 80.0,
        "{left:?}"
    );
}

#[test]
fn one_drawn_knee_is_one_joint_of_unknown_side() {
    let img = knee_film(600, 1300, &[(300.0, 450.0, 450.0, false)], 1);
    let loc = localise(&img, None).expect("one knee");
    println!("{loc:?}");
    assert!(!loc.whole_image_is_one_joint);
    assert_eq!(loc.joints.len(), 1, "{loc:?}");
    let j = &loc.joints[0];
    assert_eq!(j.side, Side::Unknown);
    assert!(
        (j.centre.0 - 300.0).abs() < 80.0 && (j.centre.1 - 450.0).abs() < 90.0,
        "{j:?}"
    );
}

#[test]
fn pixel_spacing_sets_the_crop_size() {
    let img = knee_film(600, 1300, &[(300.0, 450.0, 450.0, false)], 1);
    let loc = localise(&img, Some(0.2)).expect("one knee");
    assert_eq!(loc.joints[0].square.side, 500);
}

#[test]
fn a_drawn_joint_crop_passes_through_whole() {
    let img = knee_film(224, 224, &[(112.0, 112.0, 280.0, false)], 1);
    let loc = localise(&img, None).expect("joint crop");
    println!("{loc:?}");
    assert!(loc.whole_image_is_one_joint, "{loc:?}");
    assert_eq!(loc.joints.len(), 1);
    assert_eq!(
        loc.joints[0].square,
        Square {
            x: 0,
            y: 0,
            side: 224
        }
    );
}

/// A crop from a soft, noisy digitiser: blurred, then grain of about 12 grey levels at every
/// pixel. Sampled without averaging, the grain aliased into the 64×64 window and hid the joint.
#[test]
fn a_blurred_noisy_joint_crop_passes_through_whole() {
    for seed in 1..=4 {
        let clean = knee_film(224, 224, &[(112.0, 112.0, 280.0, false)], seed);
        let mut img = image::imageops::blur(&clean, 1.6);
        let mut rng = XorShift32::new(seed);
        let mut uniform = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        for p in img.pixels_mut() {
            let grain = 24.0 * (uniform() + uniform() + uniform() - 1.5);
            p[0] = (f32::from(p[0]) + grain).round().clamp(0.0, 255.0) as u8;
        }
        let loc = localise(&img, None);
        assert!(
            loc.as_ref().is_ok_and(|l| l.whole_image_is_one_joint),
            "seed {seed}: {loc:?}"
        );
    }
}

#[test]
fn blank_image_is_not_found() {
    let img = GrayImage::from_pixel(800, 600, Luma([90]));
    assert_eq!(localise(&img, None).unwrap_err(), NotFound::Blank);
    let msg = localise(&img, None).unwrap_err().to_string();
    assert!(
        msg.starts_with("no knee joint found in this image: "),
        "{msg}"
    );
}

#[test]
fn tiny_image_is_not_found() {
    let img = GrayImage::from_pixel(20, 300, Luma([90]));
    assert!(matches!(
        localise(&img, None),
        Err(NotFound::TooSmall { .. })
    ));
}

#[test]
fn non_knee_patterns_are_not_found() {
    let checks = GrayImage::from_fn(900, 700, |x, y| {
        Luma([if (x / 60 + y / 60) % 2 == 0 { 30 } else { 220 }])
    });
    let stripes = GrayImage::from_fn(900, 700, |x, _| {
        Luma([if (x / 25) % 2 == 0 { 40 } else { 200 }])
    });
    let mut state = 12345u32;
    let noise = GrayImage::from_fn(900, 700, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        Luma([(state >> 24) as u8])
    });
    for (name, img) in [("checks", checks), ("stripes", stripes), ("noise", noise)] {
        let result = localise(&img, None);
        assert!(
            matches!(result, Err(NotFound::NoMatch { .. } | NotFound::NoLimb)),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn crop_inside_is_not_padded() {
    let img = GrayImage::from_fn(100, 80, |x, y| Luma([(x + y) as u8]));
    let (c, padded) = crop(
        &img,
        &Square {
            x: 10,
            y: 20,
            side: 50,
        },
    );
    assert!(!padded);
    assert_eq!(c.dimensions(), (50, 50));
    assert_eq!(c.get_pixel(0, 0)[0], 30);
    assert_eq!(c.get_pixel(49, 49)[0], 59 + 69);
}

#[test]
fn crop_off_the_image_replicates_edges() {
    let img = GrayImage::from_fn(100, 80, |x, y| Luma([(x + y) as u8]));
    let (c, padded) = crop(
        &img,
        &Square {
            x: -10,
            y: 60,
            side: 40,
        },
    );
    assert!(padded);
    assert_eq!(c.dimensions(), (40, 40));
    assert_eq!(c.get_pixel(0, 0)[0], 60); // (0, 60) replicated leftwards
    assert_eq!(c.get_pixel(5, 39)[0], 79); // (0, 79) replicated to the corner below
    assert_eq!(c.get_pixel(39, 39)[0], 29 + 79);
}

fn data_dir(sub: &str) -> Option<PathBuf> {
    // Under an emulator (the cross-built tests in CI) a sweep over a thousand images takes tens of
    // minutes; the same code is swept natively.
    if util::emulated("the sweep over the development images") {
        return None;
    }
    let root = std::env::var("KNEESCREEN_SHARED_DATA")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data").into());
    let dir = Path::new(&root).join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (the development images are not part of the repository)",
            dir.display()
        );
        None
    }
}

fn images(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg")))
        .collect();
    files.sort();
    files
}

#[test]
fn joint_crops_pass_through_whole() {
    let Some(val) = data_dir("kneeKL224/val") else {
        return;
    };
    let (mut total, mut whole) = (0, 0);
    for grade in 0..5 {
        for path in images(&val.join(grade.to_string())) {
            let gray = image::open(&path).expect("decodable").to_luma8();
            total += 1;
            if localise(&gray, None).is_ok_and(|l| l.whole_image_is_one_joint) {
                whole += 1;
            }
        }
    }
    let fraction = whole as f64 / total as f64;
    println!("{whole} of {total} joint crops passed through whole");
    assert!(fraction >= 0.99, "{whole} of {total}");
}

#[test]
fn full_radiographs_have_joints_and_are_not_crops() {
    let Some(dir) = data_dir("full-radiographs") else {
        return;
    };
    let (mut total, mut found, mut whole) = (0, 0, 0);
    for path in images(&dir) {
        let gray = image::open(&path).expect("decodable").to_luma8();
        total += 1;
        if let Ok(loc) = localise(&gray, None) {
            found += 1;
            whole += usize::from(loc.whole_image_is_one_joint);
        }
    }
    println!("{found} of {total} full radiographs with joints, {whole} taken as one crop");
    assert!(found * 100 >= total * 98, "{found} of {total}");
    assert!(whole * 100 <= total, "{whole} of {total}");
}
