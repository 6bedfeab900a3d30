//! Report figures drawn in memory: an embedded-graphics canvas over an `RgbImage`, the
//! confusion-matrix image of an evaluation and the ROC curve of its OA call.

use crate::pipeline::screening::{self, OperatingPoint, Roc};
use crate::tools::metrics::Metrics;
use embedded_graphics::{
    mono_font::{
        ascii::{FONT_10X20, FONT_6X10, FONT_9X15},
        MonoFont, MonoTextStyle,
    },
    pixelcolor::{Rgb888, RgbColor},
    prelude::{DrawTarget, OriginDimensions, Point, Primitive, Size},
    primitives::{Circle, Line, PrimitiveStyle, PrimitiveStyleBuilder, Rectangle},
    text::{Alignment, Baseline, Text, TextStyleBuilder},
    Drawable, Pixel,
};
use image::{imageops, Rgb, RgbImage};

/// An `RgbImage` that embedded-graphics can draw on. Pixels outside the image are dropped,
/// so text and shapes may safely overhang the edges.
pub struct Canvas(pub RgbImage);

impl Canvas {
    pub fn new(width: u32, height: u32, background: Rgb888) -> Self {
        Canvas(RgbImage::from_pixel(width, height, to_rgb(background)))
    }

    /// Draw `text` with its anchor point at `(x, y)`; `alignment` is horizontal about x,
    /// and y is the text's vertical middle.
    pub fn text(
        &mut self,
        text: &str,
        x: i32,
        y: i32,
        font: &MonoFont,
        colour: Rgb888,
        alignment: Alignment,
    ) {
        let style = TextStyleBuilder::new()
            .alignment(alignment)
            .baseline(Baseline::Middle)
            .build();
        let character = MonoTextStyle::new(font, colour);
        // Drawing on a Canvas is infallible.
        let _ = Text::with_text_style(text, Point::new(x, y), character, style).draw(self);
    }

    /// Fill a rectangle and give it a one-pixel border.
    pub fn rect(&mut self, x: i32, y: i32, width: u32, height: u32, fill: Rgb888, border: Rgb888) {
        let style = PrimitiveStyleBuilder::new()
            .fill_color(fill)
            .stroke_color(border)
            .stroke_width(1)
            .build();
        let _ = Rectangle::new(Point::new(x, y), Size::new(width, height))
            .into_styled(style)
            .draw(self);
    }
}

fn to_rgb(c: Rgb888) -> Rgb<u8> {
    Rgb([c.r(), c.g(), c.b()])
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, colour) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) {
                if x < self.0.width() && y < self.0.height() {
                    self.0.put_pixel(x, y, to_rgb(colour));
                }
            }
        }
        Ok(())
    }
}

const CELL: u32 = 64;
const LEFT: u32 = 90;
const TOP: u32 = 90;
const MARGIN: u32 = 24;
const FOOTER: u32 = 40;
const INK: Rgb888 = Rgb888::BLACK;
const GRID: Rgb888 = Rgb888::new(160, 160, 160);
/// Fully shaded cell colour (a row fraction of 1); a fraction of 0 is white.
const SHADE: Rgb888 = Rgb888::new(8, 48, 107);

/// White blended towards [`SHADE`] by `fraction` (0..1).
fn shade(fraction: f64) -> Rgb888 {
    let mix = |c: u8| (255.0 + (f64::from(c) - 255.0) * fraction.clamp(0.0, 1.0)).round() as u8;
    Rgb888::new(mix(SHADE.r()), mix(SHADE.g()), mix(SHADE.b()))
}

/// Offset of the centre of cell `index` along an axis starting at `origin`.
fn centre(origin: u32, index: usize) -> i32 {
    (origin + index as u32 * CELL + CELL / 2) as i32
}

/// Confusion matrix as an image: rows are true KL, columns predicted KL; each cell is shaded by
/// its share of the row and shows the count and that share; the title sits on top and the
/// headline figures underneath.
pub fn confusion_png(m: &Metrics, title: &str) -> RgbImage {
    let k = m.confusion.len();
    let side = k as u32 * CELL;
    let (width, height) = (LEFT + side + MARGIN, TOP + side + FOOTER);
    let mut canvas = Canvas::new(width, height, Rgb888::WHITE);
    let left = Alignment::Left;
    let middle = Alignment::Center;

    canvas.text(title, (width / 2) as i32, 18, &FONT_10X20, INK, middle);
    let grid_middle = (LEFT + side / 2) as i32;
    canvas.text("predicted KL", grid_middle, 50, &FONT_10X20, INK, middle);

    for (i, row) in m.confusion.iter().enumerate() {
        let label = i.to_string();
        canvas.text(
            &label,
            centre(LEFT, i),
            TOP as i32 - 14,
            &FONT_10X20,
            INK,
            middle,
        );
        canvas.text(
            &label,
            LEFT as i32 - 14,
            centre(TOP, i),
            &FONT_10X20,
            INK,
            middle,
        );
        let total: u64 = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let fraction = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let x = (LEFT + j as u32 * CELL) as i32;
            let y = (TOP + i as u32 * CELL) as i32;
            canvas.rect(x, y, CELL + 1, CELL + 1, shade(fraction), GRID);
            // Past 0.6 the shade is dark enough (luminance < 128) that white reads better.
            let ink = if fraction > 0.6 { Rgb888::WHITE } else { INK };
            let (cx, cy) = (centre(LEFT, j), centre(TOP, i));
            canvas.text(&count.to_string(), cx, cy - 7, &FONT_10X20, ink, middle);
            let percent = format!("{:.0}%", 100.0 * fraction);
            canvas.text(&percent, cx, cy + 14, &FONT_6X10, ink, middle);
        }
    }

    // The row axis label reads bottom-to-top: draw it horizontally, then rotate it into place.
    let mut label = Canvas::new(side, 24, Rgb888::WHITE);
    label.text("true KL", (side / 2) as i32, 12, &FONT_10X20, INK, middle);
    imageops::overlay(
        &mut canvas.0,
        &imageops::rotate270(&label.0),
        22,
        i64::from(TOP),
    );

    let summary = format!(
        "n={}  accuracy {:.3}  QWK {:.3}  MAE {:.3}",
        m.n, m.accuracy, m.qwk, m.mae
    );
    let footer_y = (TOP + side + FOOTER / 2) as i32;
    canvas.text(&summary, 10, footer_y, &FONT_9X15, INK, left);
    canvas.0
}

const PLOT: u32 = 400;
const PLOT_LEFT: u32 = 70;
const PLOT_TOP: u32 = 60;
const CURVE: Rgb888 = Rgb888::new(8, 48, 107);
const POINT: Rgb888 = Rgb888::new(220, 40, 40);

/// The plot's pixel for a (1 − specificity, sensitivity) pair.
fn roc_pixel(false_positive_rate: f64, sensitivity: f64) -> Point {
    let at = |v: f64| (v.clamp(0.0, 1.0) * f64::from(PLOT)).round() as i32;
    Point::new(
        PLOT_LEFT as i32 + at(false_positive_rate),
        (PLOT_TOP + PLOT) as i32 - at(sensitivity),
    )
}

/// The ROC curve of P(KL ≥ 2) with its area, the chance diagonal, and the operating point (when
/// given) marked with its threshold, sensitivity and specificity on this set.
pub fn roc_png(
    roc: &Roc,
    operating: Option<(&OperatingPoint, (f64, f64))>,
    title: &str,
) -> RgbImage {
    let (width, height) = (PLOT_LEFT + PLOT + MARGIN, PLOT_TOP + PLOT + 90);
    let mut canvas = Canvas::new(width, height, Rgb888::WHITE);
    let middle = Alignment::Center;
    canvas.text(title, (width / 2) as i32, 18, &FONT_9X15, INK, middle);
    canvas.rect(
        PLOT_LEFT as i32,
        PLOT_TOP as i32,
        PLOT + 1,
        PLOT + 1,
        Rgb888::WHITE,
        GRID,
    );
    let line = |canvas: &mut Canvas, a: Point, b: Point, colour: Rgb888, width: u32| {
        let _ = Line::new(a, b)
            .into_styled(PrimitiveStyle::with_stroke(colour, width))
            .draw(canvas);
    };
    line(
        &mut canvas,
        roc_pixel(0.0, 0.0),
        roc_pixel(1.0, 1.0),
        GRID,
        1,
    );
    for tick in 0..=4 {
        let v = f64::from(tick) / 4.0;
        let label = format!("{v:.2}");
        let x = roc_pixel(v, 0.0);
        canvas.text(&label, x.x, x.y + 12, &FONT_6X10, INK, middle);
        let y = roc_pixel(0.0, v);
        canvas.text(&label, y.x - 6, y.y, &FONT_6X10, INK, Alignment::Right);
    }
    let axis_y = (PLOT_TOP + PLOT + 32) as i32;
    let x_label = "1 - specificity (KL<2 called OA)";
    canvas.text(
        x_label,
        (PLOT_LEFT + PLOT / 2) as i32,
        axis_y,
        &FONT_6X10,
        INK,
        middle,
    );
    let mut y_label = Canvas::new(PLOT, 14, Rgb888::WHITE);
    let y_text = "sensitivity (KL>=2 called OA)";
    y_label.text(y_text, (PLOT / 2) as i32, 7, &FONT_6X10, INK, middle);
    imageops::overlay(
        &mut canvas.0,
        &imageops::rotate270(&y_label.0),
        8,
        i64::from(PLOT_TOP),
    );

    let mut last = roc_pixel(0.0, 0.0);
    for p in &roc.points {
        let next = roc_pixel(1.0 - p.specificity, p.sensitivity);
        line(&mut canvas, last, next, CURVE, 2);
        last = next;
    }
    line(&mut canvas, last, roc_pixel(1.0, 1.0), CURVE, 2);

    let mut summary = format!(
        "AUC {:.3}  ({} OA, {} not OA)",
        screening::auc(roc),
        roc.positives,
        roc.negatives
    );
    if let Some((op, (sensitivity, specificity))) = operating {
        let at = roc_pixel(1.0 - specificity, sensitivity);
        let _ = Circle::with_center(at, 11)
            .into_styled(PrimitiveStyle::with_fill(POINT))
            .draw(&mut canvas);
        summary.push_str(&format!(
            "\nOA when P(KL>=2) >= {:.3} (for sensitivity {:.2}):\nsensitivity {:.3}, specificity {:.3}",
            op.threshold, op.target_sensitivity, sensitivity, specificity
        ));
    }
    for (i, row) in summary.lines().enumerate() {
        let y = (PLOT_TOP + PLOT + 50) as i32 + 14 * i as i32;
        canvas.text(row, 10, y, &FONT_6X10, INK, Alignment::Left);
    }
    canvas.0
}
