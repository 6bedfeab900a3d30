//! The virtual panel: a `BufferedPanel` whose sink encodes each flushed frame as PNG, keeps it for
//! the web console and mirrors it atomically to a file (`panel.png`).

use std::io::Cursor;
use std::ops::Range;
use std::path::PathBuf;

use embedded_graphics::{
    pixelcolor::{Rgb888, RgbColor},
    prelude::{OriginDimensions, Size},
};
use image::{ImageFormat, RgbImage};

use super::frame::{BufferedPanel, Frame, FrameSink};
use crate::store::atomic::write_atomic;

/// A panel of any size that lives in memory; it shows what an attached display would show.
pub type VirtualPanel = BufferedPanel<PngSink>;

/// Where a `VirtualPanel` sends its frames: a PNG in memory and, optionally, a file.
pub struct PngSink {
    png: Vec<u8>,
    mirror: Option<PathBuf>,
}

/// Why a flushed frame did not reach the mirror file.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("could not encode the virtual panel's frame as PNG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("could not write the panel mirror {} (disk full or read-only?): {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BufferedPanel<PngSink> {
    /// A black `width`×`height` panel. With `mirror`, every flush also writes the frame there
    /// (temporary file + rename, so a reader never sees half a PNG).
    pub fn new(width: u32, height: u32, mirror: Option<PathBuf>) -> VirtualPanel {
        let sink = PngSink {
            png: Vec::new(),
            mirror,
        };
        BufferedPanel::with_sink(width, height, sink)
    }

    /// The PNG of the last flushed frame (empty before the first flush).
    pub fn png(&self) -> Vec<u8> {
        self.sink().png.clone()
    }

    /// The frame as drawn so far, flushed or not, in 8-bit colour.
    pub fn to_rgb_image(&self) -> RgbImage {
        rgb_image(self.frame())
    }
}

fn rgb_image(frame: &Frame) -> RgbImage {
    let Size { width, height } = frame.size();
    let mut img = RgbImage::new(width, height);
    for (out, &colour) in img.pixels_mut().zip(frame.rows(0..height)) {
        let c = Rgb888::from(colour);
        *out = image::Rgb([c.r(), c.g(), c.b()]);
    }
    img
}

impl FrameSink for PngSink {
    type Error = MirrorError;

    /// Encodes the whole frame, whichever rows changed.
    fn send(&mut self, frame: &Frame, _rows: Range<u32>) -> Result<(), MirrorError> {
        let mut png = Cursor::new(Vec::new());
        rgb_image(frame).write_to(&mut png, ImageFormat::Png)?;
        // Keep the frame for the web console even if the mirror file cannot be written.
        self.png = png.into_inner();
        if let Some(path) = &self.mirror {
            write_atomic(path, &self.png).map_err(|source| MirrorError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn frame_png(&self) -> Option<Vec<u8>> {
        Some(self.png.clone())
    }
}
