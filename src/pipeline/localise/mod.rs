//! Knee joint localisation in knee radiographs.
//!
//! [`localise`] finds the knee joints in a full 8-bit grey radiograph with a HOG + linear SVM
//! sliding-window search (the model of Tiulpin et al., SCIA 2017) over a downscaled copy, and
//! [`crop`] cuts the square crop of each joint the grader expects. An image that already is a
//! single joint crop is recognised and passed through whole.

pub mod hog;
mod plane;
mod scan;
mod svm;

use image::GrayImage;

use crate::record::Side;

pub use hog::hog_descriptor;
use plane::{BoxMeans, Plane};
use scan::Candidate;

/// A square in source-image pixels; it may extend past the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Square {
    pub x: i32,
    pub y: i32,
    pub side: u32,
}

/// One knee joint found in an image.
#[derive(Clone, Debug)]
pub struct Joint {
    /// Joint centre in source pixels.
    pub centre: (f32, f32),
    /// The crop square for the grader, centred on the joint.
    pub square: Square,
    /// The patient's side on a standard AP/PA view; [`Side::Unknown`] for a single knee,
    /// which only the DICOM header can name.
    pub side: Side,
    /// SVM decision value (higher is more knee-like; detections score at least
    /// [`SCORE_THRESHOLD`]).
    pub score: f32,
}

/// The joints of one image.
#[derive(Clone, Debug)]
pub struct Localisation {
    /// Joints from the image's left to its right.
    pub joints: Vec<Joint>,
    /// The image already is one joint crop; its only joint's square is the whole image.
    pub whole_image_is_one_joint: bool,
}

/// Why no knee joint was found.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NotFound {
    #[error("no knee joint found in this image: it is too small ({width}×{height} pixels)")]
    TooSmall { width: u32, height: u32 },
    #[error("no knee joint found in this image: it is blank (almost no contrast)")]
    Blank,
    #[error(
        "no knee joint found in this image: nothing looks like a knee joint \
         (best match {best_score:.2}, needs {SCORE_THRESHOLD:.2}); is it a knee radiograph?"
    )]
    NoMatch { best_score: f32 },
    #[error("no knee joint found in this image: no window lies on a bright limb")]
    NoLimb,
}

/// Lowest SVM score accepted as a knee joint. Knees in the development radiographs score 1.0
/// or more in 95 % of images; the lower legs of those images without their knee score below
/// 0.7 in about two thirds.
pub const SCORE_THRESHOLD: f32 = 0.7;
/// Side of the crop square in millimetres when the pixel spacing is known.
pub const CROP_MM: f32 = 100.0;
/// Side of the crop square relative to the detection window when it is not. Joint crops
/// embedded in a larger canvas are found with windows 1.23 times their side; on full
/// radiographs that ratio leaves the femoral condyles spanning about 85 % of the crop against
/// about 95 % in the joint crops, hence the smaller factor.
pub const CROP_PER_WINDOW: f32 = 1.0 / 1.35;
/// The window centre lies this fraction of its side medially of the joint centre.
const WINDOW_MEDIAL_OFFSET: f32 = 0.04;

/// Smallest window searched, relative to the image's longest side; in elongated images
/// (long-leg views, more than `LONG_VIEW_ASPECT` to one) relative to the shorter side instead.
/// Smaller windows mostly find corners and markers.
const MIN_WINDOW: f32 = 0.16;
const LONG_VIEW_ASPECT: f32 = 2.2;
const MIN_WINDOW_LONG_VIEW: f32 = 0.3;
/// The working copy is sized so that the smallest window spans 64 of its pixels, within these
/// bounds for its longest side.
const WORK_LONGEST: (f32, f32) = (300.0, 640.0);
/// Images at least this elongated may be cut-outs narrower than the knee: they are also
/// searched with windows wider than the image, up to `MAX_WINDOW_OVER_SHORT_SIDE` times its
/// shorter side.
const CUT_OUT_ASPECT: f32 = 1.5;
/// In a cut-out the joint lies no nearer to either end than this fraction of its length.
const CUT_OUT_JOINT_END: f32 = 0.1;
const MAX_WINDOW_OVER_SHORT_SIDE: f32 = 1.9;
/// How much better than the best window inside the image a wider one must score.
const OVERSIZED_MARGIN: f32 = 0.3;
/// Scale step between searched window sizes.
const SCALE_STEP: f32 = 1.2;
/// Knees lie side by side: a further joint's centre is at least this fraction of the larger
/// window side to the left or right of every joint found (a window above or below a knee is
/// the same leg's shaft).
const SIDE_BY_SIDE: f32 = 0.7;
/// A further joint must score at least this and have a window side within this ratio of the
/// best joint's.
const FURTHER_JOINT_SCORE: f32 = 0.8;
const FURTHER_JOINT_SIZE_RATIO: f32 = 1.35;
/// Lowest mean brightness (0..255 after the contrast stretch) of the centre, top and bottom of
/// a window on a limb.
const LIMB_LEVEL: f32 = 50.0;
/// Half height of the joint space relative to the window side.
const JOINT_SPACE: f32 = 0.03;
/// At most this many joints are reported.
const MAX_JOINTS: usize = 4;

/// An image at most this elongated whose whole-image window scores at least
/// `WHOLE_IMAGE_SCORE`, and no less than the best smaller window of knee size, is one joint
/// crop.
const WHOLE_IMAGE_ASPECT: f32 = 1.3;
const WHOLE_IMAGE_SCORE: f32 = 0.5;
/// Windows of "knee size" inside a full image, relative to its shorter side.
const KNEE_WINDOW_RANGE: (f32, f32) = (0.3, 0.75);

/// Find the knee joints in a grey radiograph; `pixel_spacing_mm` (mm per pixel) sets the crop
/// size when known.
pub fn localise(gray: &GrayImage, pixel_spacing_mm: Option<f32>) -> Result<Localisation, NotFound> {
    let (w, h) = gray.dimensions();
    if w.min(h) < 32 {
        return Err(NotFound::TooSmall {
            width: w,
            height: h,
        });
    }
    let min_window = smallest_window(w, h);
    let work_longest = (hog::WINDOW as f32 / min_window).clamp(WORK_LONGEST.0, WORK_LONGEST.1);
    let factor = (w.max(h) as f32 / work_longest).ceil().max(1.0) as usize;
    let mut work = Plane::box_downscale(gray, factor);
    let (lo, hi) = work.quantiles(0.05, 0.99);
    if hi - lo < 8.0 {
        return Err(NotFound::Blank);
    }
    work.stretch(lo, hi);

    let candidates = scan_all(&work, min_window);
    if let Some(score) = whole_image_joint(&work, &candidates) {
        let side = w.max(h);
        return Ok(Localisation {
            joints: vec![Joint {
                centre: (w as f32 / 2.0, h as f32 / 2.0),
                square: Square {
                    x: (w as i32 - side as i32) / 2,
                    y: (h as i32 - side as i32) / 2,
                    side,
                },
                side: Side::Unknown,
                score,
            }],
            whole_image_is_one_joint: true,
        });
    }

    let joints = select_joints(&work, candidates)?;
    let f = factor as f32;
    let mut joints: Vec<Joint> = joints
        .into_iter()
        .map(|c| {
            let lateral = if c.mirrored { 1.0 } else { -1.0 };
            let cx = (c.cx + lateral * WINDOW_MEDIAL_OFFSET * c.side) * f;
            let cy = c.cy * f;
            let side = match pixel_spacing_mm {
                Some(mm) if mm > 0.0 => CROP_MM / mm,
                _ => CROP_PER_WINDOW * c.side * f,
            };
            Joint {
                centre: (cx, cy),
                square: Square {
                    x: (cx - side / 2.0).round() as i32,
                    y: (cy - side / 2.0).round() as i32,
                    side: side.round() as u32,
                },
                side: Side::Unknown,
                score: c.score,
            }
        })
        .collect();
    joints.sort_by(|a, b| a.centre.0.total_cmp(&b.centre.0));
    if let [right, left] = joints.as_mut_slice() {
        if (right.centre.1 - left.centre.1).abs()
            < 0.5 * right.square.side.max(left.square.side) as f32
        {
            right.side = Side::Right;
            left.side = Side::Left;
        }
    }
    Ok(Localisation {
        joints,
        whole_image_is_one_joint: false,
    })
}

/// The smallest window searched relative to the longest side of a `w × h` image.
fn smallest_window(w: u32, h: u32) -> f32 {
    let aspect = w.max(h) as f32 / w.min(h) as f32;
    if aspect > LONG_VIEW_ASPECT {
        MIN_WINDOW_LONG_VIEW / aspect
    } else {
        MIN_WINDOW
    }
}

/// Every window of every searched size (from `min_window` times the longest side), best first.
fn scan_all(work: &Plane, min_window: f32) -> Vec<Candidate> {
    let longest = work.width.max(work.height) as f32;
    let shortest = work.width.min(work.height) as f32;
    let table = hog::BlockWeights::default();
    // Each scale on its own thread (the scales are independent; a Pi has four cores), gathered
    // in scale order so the result does not depend on the threads.
    let sides = scan::sides((min_window * longest).min(shortest), shortest, SCALE_STEP);
    let mut all: Vec<Candidate> = std::thread::scope(|s| {
        let scans: Vec<_> = (sides.iter())
            .map(|&side| {
                let table = &table;
                s.spawn(move || {
                    let mut found = Vec::new();
                    scan::scan_scale(work, side, table, &mut found);
                    found
                })
            })
            .collect();
        (scans.into_iter())
            .flat_map(|scan| scan.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    // A knee wider than a narrow cut-out needs a window wider than the image.
    let mut side = shortest * SCALE_STEP;
    while longest / shortest >= CUT_OUT_ASPECT && side <= MAX_WINDOW_OVER_SHORT_SIDE * shortest {
        all.extend(scan::scan_oversized(work, side, CUT_OUT_JOINT_END));
        side *= SCALE_STEP;
    }
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all
}

/// The score of the whole image as one joint crop, when it is one.
fn whole_image_joint(work: &Plane, candidates: &[Candidate]) -> Option<f32> {
    let (w, h) = (work.width as f32, work.height as f32);
    if w.max(h) / w.min(h) > WHOLE_IMAGE_ASPECT {
        return None;
    }
    let whole = scan::refine(
        work,
        scan::score_window(work, w / 2.0, h / 2.0, 1.2 * w.max(h)),
    );
    let (lo, hi) = KNEE_WINDOW_RANGE;
    let knee_sized = candidates
        .iter()
        .find(|c| c.side >= lo * w.min(h) && c.side <= hi * w.min(h))
        .map_or(f32::NEG_INFINITY, |c| scan::refine(work, *c).score);
    (whole.score >= WHOLE_IMAGE_SCORE && whole.score >= knee_sized).then_some(whole.score)
}

/// The row of the joint space in a window's column: the darkest band between brighter bone
/// above and below in the window's middle third, anywhere in the image but its ends.
fn joint_line(means: &BoxMeans, c: &Candidate) -> f32 {
    let (x0, x1) = (c.cx - c.side / 6.0, c.cx + c.side / 6.0);
    let d = JOINT_SPACE * c.side;
    let band = |y0: f32, y1: f32| means.mean(x0, y0, x1, y1);
    let valley = |y: f32| {
        let above = band(y - 3.0 * d, y - d);
        let below = band(y + d, y + 3.0 * d);
        above.min(below) - band(y - d / 2.0, y + d / 2.0)
    };
    let h = means.height() as f32;
    let (top, bottom) = (
        (CUT_OUT_JOINT_END * h).max(3.0 * d),
        ((1.0 - CUT_OUT_JOINT_END) * h).min(h - 3.0 * d),
    );
    let steps = (bottom - top).max(0.0).ceil() as usize;
    (0..=steps)
        .map(|i| top + i as f32)
        .max_by(|&a, &b| valley(a).total_cmp(&valley(b)))
        .unwrap_or(c.cy)
}

/// Whether a window sits on a limb: its centre and the middle of its top and bottom quarters
/// (femur and tibia) are not background. Corners, collimation edges and markers beside the
/// leg fail this.
fn on_limb(means: &BoxMeans, c: &Candidate) -> bool {
    let band = c.side / 6.0;
    let (x0, x1) = (c.cx - band, c.cx + band);
    let centre = means.mean(x0, c.cy - band, x1, c.cy + band);
    let above = means.mean(x0, c.cy - c.side / 2.0, x1, c.cy - c.side / 4.0);
    let below = means.mean(x0, c.cy + c.side / 4.0, x1, c.cy + c.side / 2.0);
    centre.min(above).min(below) >= LIMB_LEVEL
}

/// The best window on a limb, then further windows of similar size beside it that score well.
fn select_joints(work: &Plane, candidates: Vec<Candidate>) -> Result<Vec<Candidate>, NotFound> {
    let means = BoxMeans::new(work);
    let mut candidates: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| on_limb(&means, c))
        .collect();
    // A window wider than the image wins only clearly: most narrow images hold the whole knee.
    let short = work.width.min(work.height) as f32;
    let oversized = |c: &Candidate| c.side > short;
    let best_inside = candidates
        .iter()
        .find(|c| !oversized(c))
        .map_or(f32::NEG_INFINITY, |c| c.score);
    candidates.retain(|c| !oversized(c) || c.score >= best_inside + OVERSIZED_MARGIN);
    let Some(&first) = candidates.first() else {
        return Err(NotFound::NoLimb);
    };
    let refine = |c: Candidate| {
        // Windows wider than the image were scored against a black surround; the local
        // search, which replicates the border, would drift on them, and the model places them
        // only roughly: they are put on the joint line instead.
        if oversized(&c) {
            Candidate {
                cy: joint_line(&means, &c),
                ..c
            }
        } else {
            scan::refine(work, c)
        }
    };
    let best = refine(first);
    if best.score < SCORE_THRESHOLD {
        return Err(NotFound::NoMatch {
            best_score: best.score,
        });
    }
    let mut joints = vec![best];
    for c in candidates {
        if joints.len() >= MAX_JOINTS || c.score < FURTHER_JOINT_SCORE {
            break;
        }
        let ratio = c.side.max(best.side) / c.side.min(best.side);
        let apart = joints
            .iter()
            .all(|j| (j.cx - c.cx).abs() > SIDE_BY_SIDE * j.side.max(c.side));
        if ratio <= FURTHER_JOINT_SIZE_RATIO && apart {
            let refined = refine(c);
            if refined.score >= FURTHER_JOINT_SCORE {
                joints.push(refined);
            }
        }
    }
    Ok(joints)
}

/// The square crop of `square`, with edge pixels replicated where it runs off the image;
/// the flag says whether it did.
pub fn crop(gray: &GrayImage, square: &Square) -> (GrayImage, bool) {
    let (w, h) = (gray.width() as i32, gray.height() as i32);
    let s = square.side as i32;
    let padded = square.x < 0 || square.y < 0 || square.x + s > w || square.y + s > h;
    let out = GrayImage::from_fn(square.side, square.side, |u, v| {
        let x = (square.x + u as i32).clamp(0, w - 1);
        let y = (square.y + v as i32).clamp(0, h - 1);
        *gray.get_pixel(x as u32, y as u32)
    });
    (out, padded)
}
