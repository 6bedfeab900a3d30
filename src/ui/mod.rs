//! What the panel shows: `render(target, state)` draws one view of the current study (grade card,
//! heatmap, network input) or the status page onto any `DrawTarget<Color = Rgb565>`, at any size.
//!
//! Every frame is: an optional "working…" strip at the top, the view, and a footer
//! ("view n/4 · study i/N", file name). Views lay themselves out with `layout::Screen`, which picks
//! fonts for the panel size and never lets text overflow its area. `render` draws the whole frame,
//! so the caller draws into an off-screen panel and flushes it.

mod layout;
mod views;

use std::sync::Arc;

use embedded_graphics::{pixelcolor::Rgb565, prelude::DrawTarget};
use image::{GrayImage, RgbImage};

use crate::analysis::{Analysis, Record};
use crate::dicom::PatientIdentity;
use layout::{colour, Align, Cut, Font, Screen};

/// The views, in the order a short button press cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// KL grade, OA, probabilities, refer flag.
    #[default]
    Grade,
    /// The X-ray with the Grad-CAM heatmap and the region of interest.
    Overlay,
    /// The preprocessed image the network was given.
    Input,
    /// Model, queue, inputs watched, errors, free disk.
    Status,
}

impl View {
    pub const ALL: [View; 4] = [View::Grade, View::Overlay, View::Input, View::Status];

    /// The view after this one, wrapping from Status back to Grade.
    pub fn next(self) -> View {
        // `number` is 1-based, so it is already the index of the next view.
        View::ALL[self.number() % View::ALL.len()]
    }

    /// 1-based position, as shown in the footer ("view 2/4").
    pub fn number(self) -> usize {
        self as usize + 1
    }
}

/// One analysed (or rejected) input, with its pictures.
#[derive(Debug, Clone)]
pub struct Study {
    pub record: Record,
    pub overlay: Option<RgbImage>,
    pub network_input: Option<GrayImage>,
    /// Shown in the footer instead of the file name, only when the configuration enables it.
    pub patient: Option<PatientIdentity>,
}

impl From<Analysis> for Study {
    fn from(a: Analysis) -> Study {
        Study {
            record: a.record,
            overlay: a.overlay,
            network_input: a.network_input,
            patient: None,
        }
    }
}

/// What the status view reports about the appliance (and the console's `/api/status`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatusInfo {
    /// Model name and variant, e.g. "kneekl-mnv2 int8".
    pub model: String,
    /// Inputs found but not analysed yet.
    pub queue: usize,
    /// Folders and USB mounts being watched.
    pub watched: Vec<String>,
    /// The newest problem that still stands, in words a technician understands.
    pub last_error: Option<String>,
    /// Free space in the results folder; `None` when it cannot be read.
    pub free_disk_bytes: Option<u64>,
    pub processed: u64,
    pub rejected: u64,
}

/// Everything a frame depends on: rendering the same state always draws the same pixels.
#[derive(Debug, Clone, Default)]
pub struct ViewState {
    pub view: View,
    /// The study shown; `None` until the first input has been analysed (a waiting screen).
    pub study: Option<Arc<Study>>,
    /// 0-based position of `study` among the `history_len` studies kept; shown 1-based.
    pub history_index: usize,
    pub history_len: usize,
    /// The file being analysed now, if any: a "working…" strip shows on every view.
    pub busy: Option<String>,
    pub status: StatusInfo,
}

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
    match (state.view, state.study.as_deref()) {
        (View::Status, _) => views::status(&mut screen, rest, &state.status),
        (_, None) => views::waiting(&mut screen, rest, &state.status),
        (View::Grade, Some(study)) => views::grade(&mut screen, rest, &study.record),
        (View::Overlay, Some(study)) => views::overlay(&mut screen, rest, study),
        (View::Input, Some(study)) => views::input(&mut screen, rest, study),
    }
}

/// The last path component: panels are too narrow for folders.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\'])
        .find(|s| !s.is_empty())
        .unwrap_or(path)
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
    let left = format!(
        "view {}/{} \u{b7} {position}",
        state.view.number(),
        View::ALL.len()
    );
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
