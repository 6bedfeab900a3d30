//! The seam every display implements: draw off-screen, then `flush` to the glass.

use embedded_graphics::{pixelcolor::Rgb565, prelude::DrawTarget};

/// A display that the views draw into off-screen; nothing reaches the glass until `flush`, so a
/// half-drawn frame is never shown.
pub trait Panel: DrawTarget<Color = Rgb565> {
    /// Sends the frame drawn since the last flush to the display.
    fn flush(&mut self) -> anyhow::Result<()>;

    /// The last flushed frame as PNG, for panels that keep one (the virtual panel); the web
    /// console's mirror of any other panel is drawn separately.
    fn frame_png(&self) -> Option<Vec<u8>> {
        None
    }
}
