//! Display and button backends: the `Panel` seam every display implements, the button's events,
//! and the in-memory virtual panel used on laptops, in tests and by the web console.

use embedded_graphics::{pixelcolor::Rgb565, prelude::DrawTarget};

pub mod virtual_panel;

pub use virtual_panel::VirtualPanel;

/// A display that the views draw into off-screen; nothing reaches the glass until `flush`, so a
/// half-drawn frame is never shown.
pub trait Panel: DrawTarget<Color = Rgb565> {
    /// Sends the frame drawn since the last flush to the display.
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// What the push-button (or its keyboard and web-console stand-ins) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ButtonEvent {
    /// Short press: the next view.
    Next,
    /// Long press: the previous study.
    Previous,
}
