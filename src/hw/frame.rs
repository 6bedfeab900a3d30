//! The off-screen Rgb565 frame that real displays draw into, and the `BufferedPanel` that sends
//! only the rows that changed since the last flush to a `FrameSink` (SPI panel, framebuffer,
//! virtual panel).

use std::ops::Range;

use embedded_graphics::{
    pixelcolor::Rgb565,
    prelude::{DrawTarget, OriginDimensions, PointsIter, RgbColor, Size},
    primitives::Rectangle,
    Pixel,
};

use super::panel::Panel;

/// A `width`×`height` Rgb565 image in row-major order, plus a copy of what the glass shows, so a
/// flush can send just the rows that differ (a status view that changes one number costs a few
/// rows over SPI, not a whole frame).
pub struct Frame {
    size: Size,
    pixels: Vec<Rgb565>,
    /// What the display shows; `None` until the first flush, so that one sends everything.
    shown: Option<Vec<Rgb565>>,
}

impl Frame {
    /// A black frame.
    pub fn new(width: u32, height: u32) -> Frame {
        Frame {
            size: Size::new(width, height),
            pixels: vec![Rgb565::BLACK; width as usize * height as usize],
            shown: None,
        }
    }

    /// The pixels of `rows`, row after row (`rows` must lie within the frame's height).
    pub fn rows(&self, rows: Range<u32>) -> &[Rgb565] {
        let w = self.size.width as usize;
        &self.pixels[rows.start as usize * w..rows.end as usize * w]
    }

    /// The smallest band of rows that differs from what the display shows (all of them before
    /// the first flush), or `None` when nothing changed.
    pub fn changed_rows(&self) -> Option<Range<u32>> {
        let Some(shown) = &self.shown else {
            return (!self.pixels.is_empty()).then_some(0..self.size.height);
        };
        let w = (self.size.width as usize).max(1);
        let differs = |(a, b): (&[Rgb565], &[Rgb565])| a != b;
        let pairs = || self.pixels.chunks(w).zip(shown.chunks(w));
        let first = pairs().position(differs)?;
        let last = pairs().rposition(differs).unwrap_or(first);
        Some(first as u32..last as u32 + 1)
    }

    /// Records that the display now shows `rows` as they are in the frame.
    pub fn mark_shown(&mut self, rows: Range<u32>) {
        let shown = self.shown.get_or_insert_with(|| {
            // Before the first flush nothing is known about the glass; the caller sent all rows.
            vec![Rgb565::BLACK; self.pixels.len()]
        });
        let w = self.size.width as usize;
        let span = rows.start as usize * w..rows.end as usize * w;
        shown[span.clone()].copy_from_slice(&self.pixels[span]);
    }

    fn index(&self, x: i32, y: i32) -> Option<usize> {
        let (x, y) = (u32::try_from(x).ok()?, u32::try_from(y).ok()?);
        (x < self.size.width && y < self.size.height)
            .then(|| y as usize * self.size.width as usize + x as usize)
    }
}

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        self.size
    }
}

impl DrawTarget for Frame {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    /// Pixels outside the frame are dropped, as a real panel's address window would.
    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, colour) in pixels {
            if let Some(i) = self.index(point.x, point.y) {
                self.pixels[i] = colour;
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, colour: Self::Color) -> Result<(), Self::Error> {
        let visible = area.intersection(&Rectangle::new(Default::default(), self.size));
        for point in visible.points() {
            if let Some(i) = self.index(point.x, point.y) {
                self.pixels[i] = colour;
            }
        }
        Ok(())
    }

    fn clear(&mut self, colour: Self::Color) -> Result<(), Self::Error> {
        self.pixels.fill(colour);
        Ok(())
    }
}

/// Where a `BufferedPanel` sends its rows: the SPI panel, the Linux framebuffer or the PNG of
/// the virtual panel.
pub trait FrameSink {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Puts `rows` of `frame` on the display (the rows span the frame's full width).
    fn send(&mut self, frame: &Frame, rows: Range<u32>) -> Result<(), Self::Error>;

    /// The last frame sent, as PNG, for sinks that keep one (the virtual panel).
    fn frame_png(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A display the views draw into off-screen; `flush` sends the changed rows to the sink.
pub struct BufferedPanel<S> {
    frame: Frame,
    sink: S,
}

impl<S: FrameSink> BufferedPanel<S> {
    /// A black `width`×`height` frame in front of `sink`; nothing is sent until the first flush.
    pub fn with_sink(width: u32, height: u32, sink: S) -> Self {
        BufferedPanel {
            frame: Frame::new(width, height),
            sink,
        }
    }

    /// The frame as drawn so far, flushed or not.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The sink, e.g. to inspect a test transport.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

impl<S> OriginDimensions for BufferedPanel<S> {
    fn size(&self) -> Size {
        self.frame.size
    }
}

impl<S> DrawTarget for BufferedPanel<S> {
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

impl<S: FrameSink> Panel for BufferedPanel<S> {
    /// Sends the rows that changed; after a failed send they still count as changed, so the next
    /// flush retries them.
    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(rows) = self.frame.changed_rows() {
            self.sink.send(&self.frame, rows.clone())?;
            self.frame.mark_shown(rows);
        }
        Ok(())
    }

    fn frame_png(&self) -> Option<Vec<u8>> {
        self.sink.frame_png()
    }
}
