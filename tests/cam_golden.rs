//! Grad-CAM against independent references: numpy's analytic formula, finite differences through
//! the head, OpenCV's bilinear resize, scipy's labelling, and a float32 numpy overlay.

use kneescreen::pipeline::cam::{
    channel_weights, colormap, draw_roi_outline, global_average_pool, grad_cam,
    grad_cam_with_mirror, overlay, roi, softmax, upsample, CamError, CamGrid, FeatureMap,
    ROI_THRESHOLD,
};
use kneescreen::pipeline::head::Head;
use kneescreen::record::Roi;
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cam");

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

#[derive(Deserialize)]
struct HeadCase {
    height: usize,
    width: usize,
    inputs: usize,
    hidden: usize,
    classes: usize,
    features: Vec<f32>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    pooled: Vec<f64>,
    logits: Vec<f64>,
    gradients: Vec<Vec<f64>>,
    channel_weights: Vec<Vec<f64>>,
    cams: Vec<Vec<f64>>,
}

impl HeadCase {
    fn load() -> Self {
        fixture("head.json")
    }

    fn head(&self) -> Head {
        let (w1, b1, w2, b2) = (
            self.w1.clone(),
            self.b1.clone(),
            self.w2.clone(),
            self.b2.clone(),
        );
        Head::new(w1, b1, w2, b2, self.inputs, self.hidden, self.classes).expect("valid head")
    }

    fn features(&self) -> FeatureMap<'_> {
        FeatureMap::new(&self.features, self.height, self.width, self.inputs).expect("valid map")
    }

    /// Logits in f64 written out from the definition, independent of `Head`.
    fn logits_f64(&self, pooled: &[f64]) -> Vec<f64> {
        let (n, m) = (self.hidden, self.classes);
        let mut z: Vec<f64> = self.b2.iter().map(|&b| f64::from(b)).collect();
        for j in 0..n {
            let pre: f64 = f64::from(self.b1[j])
                + (0..self.inputs)
                    .map(|k| pooled[k] * f64::from(self.w1[k * n + j]))
                    .sum::<f64>();
            for (c, zc) in z.iter_mut().enumerate() {
                *zc += pre.max(0.0) * f64::from(self.w2[j * m + c]);
            }
        }
        z
    }
}

#[test]
fn pool_and_logits_match_numpy() {
    let case = HeadCase::load();
    let pooled = global_average_pool(&case.features());
    let logits = case.head().logits(&pooled).unwrap();
    let (pool_err, logit_err) = (
        max_abs_diff(&pooled, &case.pooled),
        max_abs_diff(&logits, &case.logits),
    );
    eprintln!("max |pooled - numpy| = {pool_err:.2e}, max |logits - numpy| = {logit_err:.2e}");
    assert!(pool_err < 1e-6 && logit_err < 1e-5);
}

#[test]
fn channel_weights_and_cam_match_numpy() {
    let case = HeadCase::load();
    let (head, map) = (case.head(), case.features());
    let pooled = global_average_pool(&map);
    let (mut grad_err, mut alpha_err, mut cam_err) = (0.0f64, 0.0f64, 0.0f64);
    for c in 0..case.classes {
        grad_err = grad_err.max(max_abs_diff(
            &head.gradient(&pooled, c).unwrap(),
            &case.gradients[c],
        ));
        alpha_err = alpha_err.max(max_abs_diff(
            &channel_weights(&map, &head, c).unwrap(),
            &case.channel_weights[c],
        ));
        let cam = grad_cam(&map, &head, c).unwrap();
        assert_eq!((cam.width(), cam.height()), (case.width, case.height));
        cam_err = cam_err.max(max_abs_diff(cam.values(), &case.cams[c]));
    }
    eprintln!(
        "max abs error vs numpy: gradient {grad_err:.2e}, alpha {alpha_err:.2e}, cam {cam_err:.2e}"
    );
    assert!(grad_err < 1e-5 && alpha_err < 1e-5 && cam_err < 1e-5);
}

/// The analytic α against central differences of each logit with respect to each pooled
/// feature, through an f64 forward pass written independently of `Head`.
#[test]
fn channel_weights_match_finite_differences() {
    let case = HeadCase::load();
    let (head, map) = (case.head(), case.features());
    let pooled: Vec<f64> = global_average_pool(&map)
        .iter()
        .map(|&g| f64::from(g))
        .collect();
    let cells = (case.height * case.width) as f64;
    let eps = 1e-4;
    let mut worst = 0.0f64;
    for c in 0..case.classes {
        let alpha = channel_weights(&map, &head, c).unwrap();
        for k in 0..case.inputs {
            let mut g = pooled.clone();
            g[k] = pooled[k] + eps;
            let up = case.logits_f64(&g)[c];
            g[k] = pooled[k] - eps;
            let down = case.logits_f64(&g)[c];
            let fd = (up - down) / (2.0 * eps) / cells;
            worst = worst.max((fd - f64::from(alpha[k])).abs());
        }
    }
    eprintln!("max |alpha - finite difference / (H*W)| = {worst:.2e}");
    assert!(worst < 1e-6);
}

/// The features of a column-mirrored copy of the map: position (row, col) ← (row, W−1−col).
fn mirror_columns(case: &HeadCase, features: &[f32]) -> Vec<f32> {
    let (w, k) = (case.width, case.inputs);
    (0..case.height * w)
        .flat_map(|i| {
            let (row, col) = (i / w, i % w);
            let from = (row * w + (w - 1 - col)) * k;
            features[from..from + k].to_vec()
        })
        .collect()
}

/// The mean-logit Grad-CAM of an image and its mirror: for an exact mirror it is the image's own
/// Grad-CAM; for another second view it is ReLU(½ Σ α A + ½ Σ α' A' flipped back), written out here.
#[test]
fn grad_cam_with_mirror_is_the_mean_logits_cam() {
    let case = HeadCase::load();
    let (head, map) = (case.head(), case.features());
    let exact = mirror_columns(&case, &case.features);
    let exact = FeatureMap::new(&exact, case.height, case.width, case.inputs).unwrap();
    // A different second view: the mirror of a scaled and shifted map.
    let second: Vec<f32> = case.features.iter().map(|v| 0.7 * v + 0.05).collect();
    let second_mirrored = mirror_columns(&case, &second);
    let other_mirrored =
        FeatureMap::new(&second_mirrored, case.height, case.width, case.inputs).unwrap();
    let other = FeatureMap::new(&second, case.height, case.width, case.inputs).unwrap();
    for c in 0..case.classes {
        let same = grad_cam_with_mirror(&map, &exact, &head, c).unwrap();
        let single = grad_cam(&map, &head, c).unwrap();
        assert!(
            max_abs_diff(
                same.values(),
                &single
                    .values()
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect::<Vec<_>>()
            ) < 1e-6
        );

        let got = grad_cam_with_mirror(&map, &other_mirrored, &head, c).unwrap();
        let (a, b) = (
            channel_weights(&map, &head, c).unwrap(),
            channel_weights(&other, &head, c).unwrap(),
        );
        let want: Vec<f64> = (0..case.height * case.width)
            .map(|i| {
                let k = case.inputs;
                let dot = |f: &[f32], alpha: &[f32]| -> f64 {
                    f[i * k..(i + 1) * k]
                        .iter()
                        .zip(alpha)
                        .map(|(&x, &w)| f64::from(x) * f64::from(w))
                        .sum()
                };
                // `second` is the second view in the image's columns (its mirror was passed in).
                (0.5 * dot(&case.features, &a) + 0.5 * dot(&second, &b)).max(0.0)
            })
            .collect();
        assert!(max_abs_diff(got.values(), &want) < 1e-5, "class {c}");
    }
    let small = vec![0.0; case.inputs];
    let small = FeatureMap::new(&small, 1, 1, case.inputs).unwrap();
    assert!(grad_cam_with_mirror(&map, &small, &head, 0).is_err());
}

#[test]
fn no_active_hidden_unit_gives_zero_cam() {
    let case = HeadCase::load();
    let b1 = vec![-1e3; case.hidden];
    let (w1, w2, b2) = (case.w1.clone(), case.w2.clone(), case.b2.clone());
    let head = Head::new(w1, b1, w2, b2, case.inputs, case.hidden, case.classes).unwrap();
    for c in 0..case.classes {
        let cam = grad_cam(&case.features(), &head, c).unwrap();
        assert!(cam.values().iter().all(|&v| v == 0.0));
        assert!(upsample(&cam, 30, 20).values().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn upsample_of_constant_grid_is_constant() {
    let grid = CamGrid::new(7, 7, vec![0.37; 49]).unwrap();
    for (w, h) in [(224, 224), (45, 30), (5, 3), (1, 1)] {
        let up = upsample(&grid, w, h);
        assert_eq!(up.values().len(), (w * h) as usize);
        assert!(up.values().iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }
}

#[derive(Deserialize)]
struct UpsampleCase {
    grid_width: usize,
    grid_height: usize,
    grid: Vec<f32>,
    width: u32,
    height: u32,
    values: Vec<f64>,
}

#[test]
fn upsample_matches_opencv_bilinear() {
    let cases: Vec<UpsampleCase> = fixture("upsample.json");
    for case in cases {
        let grid = CamGrid::new(case.grid_width, case.grid_height, case.grid).unwrap();
        let up = upsample(&grid, case.width, case.height);
        let err = max_abs_diff(up.values(), &case.values);
        eprintln!(
            "upsample {}x{} -> {}x{}: max |rust - cv2| = {err:.2e}",
            case.grid_width, case.grid_height, case.width, case.height
        );
        assert!(err < 1e-4);
    }
}

/// A 20×15 map with a 5×4 blob, a diagonal neighbour joined to it (8-connectivity), and a
/// smaller separate 3×3 blob.
#[test]
fn roi_boxes_the_largest_blob() {
    let (w, h) = (20, 15);
    let mut values = vec![0.1f32; w * h];
    let mut set = |x0: usize, y0: usize, bw: usize, bh: usize, v: f32| {
        for y in y0..y0 + bh {
            for x in x0..x0 + bw {
                values[y * w + x] = v;
            }
        }
    };
    set(10, 6, 5, 4, 0.9);
    set(15, 10, 1, 1, 0.6);
    set(1, 1, 3, 3, 1.0);
    let heat = CamGrid::new(w, h, values).unwrap();
    let expected = Roi {
        x: 10,
        y: 6,
        width: 6,
        height: 5,
        area_fraction: 21.0 / 300.0,
    };
    assert_eq!(roi(&heat, ROI_THRESHOLD), Some(expected));
    assert_eq!(
        roi(&heat, 0.95).map(|r| (r.x, r.y, r.width, r.height)),
        Some((1, 1, 3, 3))
    );
    assert_eq!(roi(&heat, 1.5), None);
}

#[derive(Deserialize)]
struct OverlayCase {
    width: usize,
    height: usize,
    alpha: f32,
    threshold: f32,
    heat: Vec<f32>,
    roi: RoiJson,
}

#[derive(Deserialize)]
struct RoiJson {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    area_fraction: f32,
}

fn png(name: &str) -> image::DynamicImage {
    image::open(format!("{FIXTURES}/{name}")).expect("fixture PNG decodes")
}

#[test]
fn overlay_and_outline_match_golden_pngs() {
    let case: OverlayCase = fixture("overlay.json");
    let xray = png("xray.png").to_luma8();
    let heat = CamGrid::new(case.width, case.height, case.heat).unwrap();

    let mut img = overlay(&xray, &heat, case.alpha).unwrap();
    assert_eq!(img.as_raw(), png("overlay.png").to_rgb8().as_raw());

    draw_roi_outline(&mut img, &heat, case.threshold).unwrap();
    assert_eq!(img.as_raw(), png("overlay_roi.png").to_rgb8().as_raw());

    let expected = Roi {
        x: case.roi.x,
        y: case.roi.y,
        width: case.roi.width,
        height: case.roi.height,
        area_fraction: case.roi.area_fraction,
    };
    assert_eq!(roi(&heat, case.threshold), Some(expected));
}

#[test]
fn mismatched_sizes_are_errors_not_panics() {
    let xray = image::GrayImage::new(10, 8);
    let heat = CamGrid::new(8, 10, vec![0.5; 80]).unwrap();
    assert!(matches!(
        overlay(&xray, &heat, 0.4),
        Err(CamError::Size { .. })
    ));
    let mut img = image::RgbImage::new(10, 8);
    assert!(matches!(
        draw_roi_outline(&mut img, &heat, 0.5),
        Err(CamError::Size { .. })
    ));
    assert!(matches!(
        CamGrid::new(3, 3, vec![0.0; 8]),
        Err(CamError::Length { .. })
    ));
}

#[test]
fn bad_model_tensors_are_rejected() {
    let ok = || {
        (
            vec![0.0f32; 6],
            vec![0.0f32; 2],
            vec![0.0f32; 4],
            vec![0.0f32; 2],
        )
    };
    let (w1, b1, w2, b2) = ok();
    assert!(Head::new(w1, b1, w2, b2, 3, 2, 2).is_ok());
    let (_, b1, w2, b2) = ok();
    assert!(matches!(
        Head::new(vec![0.0; 5], b1, w2, b2, 3, 2, 2),
        Err(CamError::Length {
            got: 5,
            expected: 6,
            ..
        })
    ));
    let (w1, b1, w2, _) = ok();
    assert!(matches!(
        Head::new(w1, b1, w2, vec![f32::NAN, 0.0], 3, 2, 2),
        Err(CamError::NonFinite(_))
    ));
    let (w1, b1, w2, b2) = ok();
    let head = Head::new(w1, b1, w2, b2, 3, 2, 2).unwrap();
    assert!(matches!(
        head.logits(&[0.0; 4]),
        Err(CamError::Length { .. })
    ));
    assert!(matches!(
        head.gradient(&[0.0; 3], 2),
        Err(CamError::Class { .. })
    ));

    let data = vec![0.0f32; 2 * 2 * 4];
    assert!(matches!(
        FeatureMap::new(&data, 2, 2, 3),
        Err(CamError::Length { .. })
    ));
    assert!(matches!(
        FeatureMap::new(&[], 0, 2, 3),
        Err(CamError::Empty(_))
    ));
    let map = FeatureMap::new(&data, 2, 2, 4).unwrap();
    assert!(matches!(
        grad_cam(&map, &head, 0),
        Err(CamError::Length { .. })
    ));
}

#[test]
fn softmax_is_a_stable_distribution() {
    let p = softmax(&[1000.0, 1001.0, 999.0, -5.0, 0.0]);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(p.iter().all(|v| v.is_finite()));
    assert!(p[1] > p[0] && p[0] > p[2]);
}

#[test]
fn colormap_is_jet() {
    assert_eq!(colormap(0.0), [0, 0, 128]);
    assert_eq!(colormap(0.5), [128, 255, 128]);
    assert_eq!(colormap(1.0), [128, 0, 0]);
    assert_eq!(colormap(-3.0), colormap(0.0));
    assert_eq!(colormap(f32::NAN), colormap(0.0));
}
