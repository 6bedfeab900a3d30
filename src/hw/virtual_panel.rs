//! The virtual panel: an in-memory Rgb565 frame the views draw into. Each flush encodes the frame
//! as PNG, keeps it for the web console and mirrors it atomically to a file (`panel.png`).

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::Context;
use embedded_graphics::{
    pixelcolor::{Rgb565, Rgb888, RgbColor},
    prelude::{DrawTarget, OriginDimensions, Size},
    primitives::Rectangle,
    Pixel,
};
use image::{ImageFormat, RgbImage};

use super::frame::Frame;
use super::Panel;
use crate::results::write_atomic;

/// A panel of any size that lives in memory; it shows what an attached display would show.
pub struct VirtualPanel {
    frame: Frame,
    png: Vec<u8>,
    mirror: Option<PathBuf>,
}

impl VirtualPanel {
    /// A black `width`×`height` panel. With `mirror`, every flush also writes the frame there
    /// (temporary file + rename, so a reader never sees half a PNG).
    pub fn new(width: u32, height: u32, mirror: Option<PathBuf>) -> VirtualPanel {
        VirtualPanel {
            frame: Frame::new(width, height),
            png: Vec::new(),
            mirror,
        }
    }

    /// The PNG of the last flushed frame (empty before the first flush).
    pub fn png(&self) -> Vec<u8> {
        self.png.clone()
    }

    /// The frame as drawn so far, flushed or not, in 8-bit colour.
    pub fn to_rgb_image(&self) -> RgbImage {
        let Size { width, height } = self.frame.size();
        let mut img = RgbImage::new(width, height);
        for (out, &colour) in img.pixels_mut().zip(self.frame.rows(0..height)) {
            let c = Rgb888::from(colour);
            *out = image::Rgb([c.r(), c.g(), c.b()]);
        }
        img
    }
}

impl OriginDimensions for VirtualPanel {
    fn size(&self) -> Size {
        self.frame.size()
    }
}

/// Drawing goes straight to the in-memory frame (pixels outside it are dropped).
impl DrawTarget for VirtualPanel {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        self.frame.draw_iter(pixels)
    }

    fn fill_solid(&mut self, area: &Rectangle, colour: Self::Color) -> Result<(), Self::Error> {
        self.frame.fill_solid(area, colour)
    }

    fn clear(&mut self, colour: Self::Color) -> Result<(), Self::Error> {
        self.frame.clear(colour)
    }
}

impl Panel for VirtualPanel {
    fn flush(&mut self) -> anyhow::Result<()> {
        let mut png = Cursor::new(Vec::new());
        self.to_rgb_image()
            .write_to(&mut png, ImageFormat::Png)
            .context("could not encode the virtual panel's frame as PNG")?;
        // Keep the frame for the web console even if the mirror file cannot be written.
        self.png = png.into_inner();
        if let Some(path) = &self.mirror {
            write_atomic(path, &self.png).with_context(|| {
                format!(
                    "could not write the panel mirror {} (disk full or read-only?)",
                    path.display()
                )
            })?;
        }
        Ok(())
    }

    fn frame_png(&self) -> Option<Vec<u8>> {
        Some(self.png.clone())
    }
}
