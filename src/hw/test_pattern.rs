//! A bring-up picture for a newly wired display: it shows at a glance whether colour order,
//! inversion, rotation and offsets in the panel config are right.

use embedded_graphics::{
    mono_font::{ascii::FONT_6X10, MonoTextStyle},
    pixelcolor::Rgb565,
    prelude::*,
    primitives::{PrimitiveStyle, Rectangle},
    text::{Baseline, Text},
};

/// Draws the test pattern over the whole target:
/// - background black (white means `invert` is wrong);
/// - three bars labelled RED, GREEN, BLUE (red and blue swapped means `colour_order` is wrong);
/// - "TOP LEFT" in the top-left corner (elsewhere or mirrored: `rotation` / `mirrored`);
/// - a one-pixel white border (a missing edge or a noise band: `x_offset` / `y_offset`);
/// - the size the config asked for, in the middle.
pub fn draw_test_pattern<D>(target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb565>,
{
    let area = target.bounding_box();
    let Size { width, height } = area.size;
    target.clear(Rgb565::BLACK)?;
    let label = MonoTextStyle::new(&FONT_6X10, Rgb565::WHITE);

    let bar_height = height / 5;
    let dark = MonoTextStyle::new(&FONT_6X10, Rgb565::BLACK);
    let bars = [
        (Rgb565::RED, "RED", label),
        (Rgb565::GREEN, "GREEN", dark),
        (Rgb565::BLUE, "BLUE", label),
    ];
    for (i, (colour, name, label)) in (0i32..).zip(bars) {
        let top = (height / 5) as i32 * (i + 1);
        Rectangle::new(Point::new(0, top), Size::new(width, bar_height))
            .into_styled(PrimitiveStyle::with_fill(colour))
            .draw(target)?;
        Text::with_baseline(name, Point::new(4, top + 2), label, Baseline::Top).draw(target)?;
    }

    Text::with_baseline("TOP LEFT", Point::new(3, 3), label, Baseline::Top).draw(target)?;
    let size = format!("{width}x{height}");
    let centre = Point::new(width as i32 / 2 - 3 * size.len() as i32, height as i32 - 14);
    Text::with_baseline(&size, centre, label, Baseline::Top).draw(target)?;

    area.into_styled(PrimitiveStyle::with_stroke(Rgb565::WHITE, 1))
        .draw(target)
}
