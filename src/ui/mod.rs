//! What the panel shows: `render(target, state)` draws one view of the current study (grade card,
//! heatmap, network input) or the status page onto any `DrawTarget<Color = Rgb565>`, at any size.
//!
//! Every frame is: an optional "working…" strip at the top, the view, and a footer
//! ("view n/4 · study i/N", file name). Views lay themselves out with `layout::Screen`, which picks
//! fonts for the panel size and never lets text overflow its area. `render` draws the whole frame,
//! so the caller draws into an off-screen panel and flushes it.

mod layout; // fonts, areas and text that never overflows, for any panel size
mod state; // the view, the study and the status a frame is drawn from
mod views; // each view's drawing

use embedded_graphics::{pixelcolor::Rgb565, prelude::DrawTarget};

use crate::pipeline::decode::dicom::identity::PatientIdentity;
use layout::{colour, Align, Cut, Font, Screen};
use state::file_name;
pub use state::{StatusInfo, Study, View, ViewState};

/// Draws the whole frame for `state` (every pixel of `target` is written).
pub fn render<D: DrawTarget<Color = Rgb565>>(
    target: &mut D,
    state: &ViewState,
) -> Result<(), D::Error> {
    target.clear(colour::BACKGROUND)?;
    let mut screen = Screen::new(target);
    let mut rest = screen.area();
    if let Some(file) = &state.busy {
        let strip = rest.take_top(screen.theme.line_height(Font::Bold) + screen.theme.pad);
        busy_strip(&mut screen, strip, file)?;
    }
    let footer = rest.take_bottom(screen.theme.line_height(Font::Small) + screen.theme.pad);
    footer_bar(&mut screen, footer, state)?;
    let focused = state.study.as_deref().map(|s| s.focus(state.knee));
    match (state.view, focused.as_ref()) {
        (View::Status, _) => views::status(&mut screen, rest, &state.status),
        (_, None) => views::waiting(&mut screen, rest, &state.status),
        (View::Film, Some(study)) => views::film(&mut screen, rest, study),
        (View::Grade, Some(study)) => views::grade(&mut screen, rest, &study.record),
        (View::Overlay, Some(study)) => views::overlay(&mut screen, rest, study),
        (View::Input, Some(study)) => views::input(&mut screen, rest, study),
    }
}

/// "working… knee_0012.png" on a blue strip, whatever view is shown.
fn busy_strip<D: DrawTarget<Color = Rgb565>>(
    screen: &mut Screen<D>,
    strip: layout::Area,
    file: &str,
) -> Result<(), D::Error> {
    screen.fill(strip, colour::BUSY)?;
    let inner = strip.inset(screen.theme.pad / 2);
    // The Latin-1 fonts have no "…".
    let label = "working... ";
    let room = screen
        .theme
        .chars_in(Font::Bold, inner.w)
        .saturating_sub(label.len());
    let text = format!(
        "{label}{}",
        layout::ellipsize(file_name(file), room, Cut::Middle)
    );
    screen.text(inner, &text, Font::Bold, colour::TEXT, Align::Left)
}

/// "view 2/4 · study 3/12" on the left, the study's patient (when shown) or file name on the right.
fn footer_bar<D: DrawTarget<Color = Rgb565>>(
    screen: &mut Screen<D>,
    footer: layout::Area,
    state: &ViewState,
) -> Result<(), D::Error> {
    let mut row = footer;
    screen.fill(row.take_top(1), colour::TRACK)?;
    let mut row = row.centred(
        row.w.saturating_sub(screen.theme.pad),
        screen.theme.line_height(Font::Small),
    );
    let position = match state.history_len {
        0 => "no studies yet".to_string(),
        n => format!("study {}/{n}", (state.history_index + 1).min(n)),
    };
    let (view, views) = state.position();
    let left = format!("view {view}/{views} \u{b7} {position}");
    let left_width = screen.theme.width_of(Font::Small, left.chars().count());
    screen.text(
        row.take_left(left_width),
        &left,
        Font::Small,
        colour::DIM,
        Align::Left,
    )?;
    if let Some(study) = &state.study {
        row.take_left(screen.theme.width_of(Font::Small, 2));
        let room = screen.theme.chars_in(Font::Small, row.w);
        let name = match study.patient.as_ref().and_then(PatientIdentity::label) {
            Some(patient) => layout::ellipsize(&patient, room, Cut::End),
            None => layout::ellipsize(file_name(&study.record.file), room, Cut::Middle),
        };
        screen.text(row, &name, Font::Small, colour::DIM, Align::Right)?;
    }
    Ok(())
}
