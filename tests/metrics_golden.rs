//! Evaluation metrics against scikit-learn, and the confusion-matrix figure against its golden PNG.
//! Run with KNEESCREEN_BLESS=1 to rewrite the figure's golden after an intended change.

use embedded_graphics::{
    pixelcolor::Rgb888,
    prelude::{Point, Primitive, RgbColor, Size},
    primitives::{PrimitiveStyle, Rectangle},
    Drawable,
};
use kneescreen::tools::figures::{confusion_png, Canvas};
use kneescreen::tools::metrics::{compute, Metrics, MetricsError};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");

#[derive(Deserialize)]
struct Case {
    name: String,
    truth: Vec<u8>,
    pred: Vec<u8>,
    accuracy: f64,
    qwk: f64,
    mae: f64,
    binary_accuracy: f64,
    sensitivity: f64,
    specificity: f64,
    confusion: Vec<Vec<u64>>,
    precision: Vec<f64>,
    recall: Vec<f64>,
    f1: Vec<f64>,
    support: Vec<u64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/cases.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

#[test]
fn metrics_match_sklearn() {
    let mut worst = 0.0f64;
    for case in cases() {
        let m = compute(&case.truth, &case.pred, 5).unwrap();
        let name = &case.name;
        assert_eq!(m.n, case.truth.len(), "{name}");
        assert_eq!(m.confusion, case.confusion, "{name}");
        let pairs = [
            ("accuracy", m.accuracy, case.accuracy),
            ("qwk", m.qwk, case.qwk),
            ("mae", m.mae, case.mae),
            ("binary_accuracy", m.binary_accuracy, case.binary_accuracy),
            ("sensitivity", m.sensitivity, case.sensitivity),
            ("specificity", m.specificity, case.specificity),
        ];
        let per_class = m.per_class.iter().enumerate().flat_map(|(c, p)| {
            assert_eq!(
                (usize::from(p.grade), p.support),
                (c, case.support[c]),
                "{name}"
            );
            [
                ("precision", p.precision, case.precision[c]),
                ("recall", p.recall, case.recall[c]),
                ("f1", p.f1, case.f1[c]),
            ]
        });
        for (what, got, want) in pairs.into_iter().chain(per_class) {
            assert!(
                (got - want).abs() < 1e-9,
                "{name}: {what} {got} != sklearn {want}"
            );
            worst = worst.max((got - want).abs());
        }
    }
    eprintln!("max |rust - sklearn| over all metrics = {worst:.2e}");
}

#[test]
fn empty_input_gives_zeros_not_nan() {
    let m = compute(&[], &[], 5).unwrap();
    assert_eq!(m.n, 0);
    let values = [
        m.accuracy,
        m.qwk,
        m.mae,
        m.binary_accuracy,
        m.sensitivity,
        m.specificity,
    ];
    assert!(values.iter().all(|&v| v == 0.0));
    assert!(m
        .per_class
        .iter()
        .all(|c| c.precision == 0.0 && c.recall == 0.0 && c.f1 == 0.0));
    assert_eq!(m.confusion, vec![vec![0; 5]; 5]);
    assert!(!m.to_text().contains("NaN"));
    assert!(!serde_json::to_string(&m).unwrap().contains("null"));
}

#[test]
fn bad_labels_are_errors() {
    assert_eq!(
        compute(&[0, 1], &[0], 5),
        Err(MetricsError::LengthMismatch { truth: 2, pred: 1 })
    );
    assert!(matches!(
        compute(&[0, 1], &[0, 7], 5),
        Err(MetricsError::Grade {
            grade: 7,
            index: 1,
            ..
        })
    ));
}

fn example() -> Metrics {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "skewed towards KL0")
        .expect("case");
    compute(&case.truth, &case.pred, 5).unwrap()
}

#[test]
fn text_report_is_labelled() {
    let text = example().to_text();
    eprintln!("{text}");
    for needle in [
        "accuracy",
        "quadratic kappa",
        "sensitivity",
        "specificity",
        "precision",
    ] {
        assert!(text.contains(needle), "report lacks {needle}");
    }
    assert!(text.contains("rows: true KL, columns: predicted KL"));
}

#[test]
fn confusion_figure_matches_golden() {
    let img = confusion_png(&example(), "KL grade confusion (synthetic)");
    let path = format!("{FIXTURES}/confusion.png");
    if std::env::var_os("KNEESCREEN_BLESS").is_some() {
        img.save(&path).expect("golden written");
    }
    let golden = image::open(&path).expect("golden PNG decodes").to_rgb8();
    assert_eq!(img.dimensions(), golden.dimensions());
    assert!(
        img.as_raw() == golden.as_raw(),
        "figure differs from {path}"
    );
}

#[test]
fn canvas_clips_out_of_bounds_pixels() {
    let mut canvas = Canvas::new(10, 8, Rgb888::WHITE);
    // A rectangle overhanging every edge must fill exactly the image, without panicking.
    Rectangle::new(Point::new(-5, -5), Size::new(30, 30))
        .into_styled(PrimitiveStyle::with_fill(Rgb888::RED))
        .draw(&mut canvas)
        .unwrap();
    assert!(canvas.0.pixels().all(|p| p.0 == [255, 0, 0]));
    // Entirely outside: nothing changes.
    Rectangle::new(Point::new(20, -40), Size::new(5, 5))
        .into_styled(PrimitiveStyle::with_fill(Rgb888::BLUE))
        .draw(&mut canvas)
        .unwrap();
    assert!(canvas.0.pixels().all(|p| p.0 == [255, 0, 0]));
    assert_eq!((canvas.0.width(), canvas.0.height()), (10, 8));
}
