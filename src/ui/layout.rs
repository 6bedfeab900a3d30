//! The one layout toolkit every view draws with: a theme chosen from the panel size (fonts,
//! spacing, colours), areas carved off the screen, and text, bars and pictures that stay inside them.
//!
//! Everything that draws text measures it first: a line that does not fit its area's width is
//! shortened with "...", and a line that does not fit its height is not drawn, so no view can
//! overlap another element or be clipped by the panel edge, whatever the panel size.

use embedded_graphics::{
    mono_font::{iso_8859_1 as fonts, MonoFont, MonoTextStyle},
    pixelcolor::Rgb565,
    prelude::{DrawTarget, Point, Size},
    primitives::{Primitive, PrimitiveStyle, Rectangle},
    text::{Baseline, Text},
    Drawable, Pixel,
};

/// Colours for cheap TN panels, which wash out at an angle: saturated hues and near-white text
/// on black; nothing depends on telling two dark greys apart.
pub mod colour {
    use embedded_graphics::pixelcolor::Rgb565;

    const fn rgb(r: u8, g: u8, b: u8) -> Rgb565 {
        Rgb565::new(r >> 3, g >> 2, b >> 3)
    }

    pub const BACKGROUND: Rgb565 = rgb(0, 0, 0);
    pub const TEXT: Rgb565 = rgb(255, 255, 255);
    pub const DIM: Rgb565 = rgb(190, 190, 190);
    /// The grade and its bar, titles.
    pub const ACCENT: Rgb565 = rgb(0, 220, 255);
    pub const GOOD: Rgb565 = rgb(60, 230, 90);
    /// Banners (refer, rejected) with black text on them, and warnings.
    pub const WARN: Rgb565 = rgb(255, 190, 0);
    pub const ALERT: Rgb565 = rgb(255, 90, 90);
    pub const ON_BANNER: Rgb565 = rgb(0, 0, 0);
    /// The "working…" strip.
    pub const BUSY: Rgb565 = rgb(0, 70, 210);
    /// Probability bars other than the predicted grade, and the empty part of every bar.
    pub const BAR: Rgb565 = rgb(150, 150, 175);
    pub const TRACK: Rgb565 = rgb(55, 55, 65);
    /// The region-of-interest box: magenta, like the outline in the overlay image.
    pub const ROI: Rgb565 = rgb(255, 0, 255);
}

/// The fonts of a theme, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    Body,
    Bold,
    Small,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Centre,
    Right,
}

/// The glyphs that `Screen::big_text` magnifies.
const BIG: &MonoFont<'static> = &fonts::FONT_10X20;

/// Fonts and spacing for one panel size. Latin-1 fonts, so "×", "·" and "é" draw as themselves.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    body: &'static MonoFont<'static>,
    bold: &'static MonoFont<'static>,
    small: &'static MonoFont<'static>,
    /// Magnification of `BIG` for the grade.
    big_scale: u32,
    /// Margin around blocks, in pixels.
    pub pad: u32,
    /// Space between lines of text, in pixels.
    gap: u32,
}

impl Theme {
    /// Three tiers: small TFTs (240×240, 320×240), 3.5" panels (480×320) and 5–7" panels
    /// (800×480). Each keeps at least ~40 body characters per line and ~16 lines per screen.
    pub fn for_size(size: Size) -> Theme {
        if size.width >= 640 && size.height >= 400 {
            Theme {
                body: &fonts::FONT_10X20,
                bold: &fonts::FONT_9X18_BOLD,
                small: &fonts::FONT_9X15,
                big_scale: 4,
                pad: 8,
                gap: 3,
            }
        } else if size.width >= 400 && size.height >= 300 {
            Theme {
                body: &fonts::FONT_8X13,
                bold: &fonts::FONT_8X13_BOLD,
                small: &fonts::FONT_6X12,
                big_scale: 3,
                pad: 6,
                gap: 2,
            }
        } else {
            Theme {
                body: &fonts::FONT_6X12,
                bold: &fonts::FONT_6X13_BOLD,
                small: &fonts::FONT_6X10,
                big_scale: 2,
                pad: 4,
                gap: 1,
            }
        }
    }

    fn font(&self, font: Font) -> &'static MonoFont<'static> {
        match font {
            Font::Body => self.body,
            Font::Bold => self.bold,
            Font::Small => self.small,
        }
    }

    /// Height of one line of `font`, spacing included.
    pub fn line_height(&self, font: Font) -> u32 {
        self.font(font).character_size.height + self.gap
    }

    /// How many characters of `font` fit in `width` pixels.
    pub fn chars_in(&self, font: Font, width: u32) -> usize {
        let f = self.font(font);
        ((width + f.character_spacing) / (f.character_size.width + f.character_spacing)) as usize
    }

    /// The first of `options` that fits on one line of `font` in `width` pixels, else the last.
    pub fn first_fitting<'t>(&self, options: &[&'t str], font: Font, width: u32) -> &'t str {
        let fits = |text: &&str| latin1(text).chars().count() <= self.chars_in(font, width);
        options
            .iter()
            .copied()
            .find(fits)
            .or(options.last().copied())
            .unwrap_or_default()
    }

    /// Width in pixels of `chars` characters of `font`.
    pub fn width_of(&self, font: Font, chars: usize) -> u32 {
        let f = self.font(font);
        (chars as u32 * (f.character_size.width + f.character_spacing))
            .saturating_sub(f.character_spacing)
    }
}

/// A rectangle of the screen that views carve up: blocks are taken off its edges, so two blocks
/// can never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

impl Area {
    pub fn take_top(&mut self, h: u32) -> Area {
        let h = h.min(self.h);
        let taken = Area { h, ..*self };
        self.y += h as i32;
        self.h -= h;
        taken
    }

    pub fn take_bottom(&mut self, h: u32) -> Area {
        let h = h.min(self.h);
        self.h -= h;
        Area {
            y: self.y + self.h as i32,
            h,
            ..*self
        }
    }

    pub fn take_left(&mut self, w: u32) -> Area {
        let w = w.min(self.w);
        let taken = Area { w, ..*self };
        self.x += w as i32;
        self.w -= w;
        taken
    }

    pub fn take_right(&mut self, w: u32) -> Area {
        let w = w.min(self.w);
        self.w -= w;
        Area {
            x: self.x + self.w as i32,
            w,
            ..*self
        }
    }

    /// The area shrunk by `margin` on every side.
    pub fn inset(self, margin: u32) -> Area {
        let (mx, my) = (margin.min(self.w / 2), margin.min(self.h / 2));
        Area {
            x: self.x + mx as i32,
            y: self.y + my as i32,
            w: self.w - 2 * mx,
            h: self.h - 2 * my,
        }
    }

    /// A `w`×`h` area centred in this one (no larger than it).
    pub fn centred(self, w: u32, h: u32) -> Area {
        let (w, h) = (w.min(self.w), h.min(self.h));
        Area {
            x: self.x + ((self.w - w) / 2) as i32,
            y: self.y + ((self.h - h) / 2) as i32,
            w,
            h,
        }
    }

    fn rect(self) -> Rectangle {
        Rectangle::new(Point::new(self.x, self.y), Size::new(self.w, self.h))
    }
}

/// Text wrapped for one font and width, measured before it is given an area.
pub struct Lines {
    lines: Vec<String>,
    font: Font,
}

/// A draw target together with its theme: the only way views draw.
pub struct Screen<'a, D> {
    target: &'a mut D,
    pub theme: Theme,
}

impl<'a, D: DrawTarget<Color = Rgb565>> Screen<'a, D> {
    pub fn new(target: &'a mut D) -> Self {
        let theme = Theme::for_size(target.bounding_box().size);
        Screen { target, theme }
    }

    /// The whole drawable area.
    pub fn area(&self) -> Area {
        let r = self.target.bounding_box();
        Area {
            x: r.top_left.x,
            y: r.top_left.y,
            w: r.size.width,
            h: r.size.height,
        }
    }

    pub fn fill(&mut self, area: Area, colour: Rgb565) -> Result<(), D::Error> {
        self.target.fill_solid(&area.rect(), colour)
    }

    /// A `width`-pixel border drawn inside `area`.
    pub fn outline(&mut self, area: Area, colour: Rgb565, width: u32) -> Result<(), D::Error> {
        area.rect()
            .into_styled(PrimitiveStyle::with_stroke(colour, width))
            .draw(self.target)
    }

    /// One line of text at the top of `area`, shortened with "..." to its width; nothing is
    /// drawn when the area is not tall enough for the font.
    pub fn text(
        &mut self,
        area: Area,
        text: &str,
        font: Font,
        colour: Rgb565,
        align: Align,
    ) -> Result<(), D::Error> {
        let f = self.theme.font(font);
        if area.h < f.character_size.height {
            return Ok(());
        }
        let text = ellipsize(&latin1(text), self.theme.chars_in(font, area.w), Cut::End);
        let width = self.theme.width_of(font, text.chars().count());
        let x = match align {
            Align::Left => area.x,
            Align::Centre => area.x + ((area.w - width) / 2) as i32,
            Align::Right => area.x + (area.w - width) as i32,
        };
        let style = MonoTextStyle::new(f, colour);
        Text::with_baseline(&text, Point::new(x, area.y), style, Baseline::Top)
            .draw(self.target)?;
        Ok(())
    }

    /// One line of text taken off the top of `rest`.
    pub fn line(
        &mut self,
        rest: &mut Area,
        text: &str,
        font: Font,
        colour: Rgb565,
    ) -> Result<(), D::Error> {
        let area = rest.take_top(self.theme.line_height(font));
        self.text(area, text, font, colour, Align::Left)
    }

    /// `text` word-wrapped to `width` pixels, at most `max_lines` lines; when it is cut, the
    /// last line ends in "...".
    pub fn wrap(&self, text: &str, font: Font, width: u32, max_lines: usize) -> Lines {
        let mut lines = wrap(&latin1(text), self.theme.chars_in(font, width));
        if lines.len() > max_lines {
            lines.truncate(max_lines);
            let max = self.theme.chars_in(font, width);
            if let Some(last) = lines.last_mut() {
                let kept: String = last.chars().take(max.saturating_sub(3)).collect();
                *last = format!("{}...", kept.trim_end());
            }
        }
        Lines { lines, font }
    }

    pub fn height(&self, lines: &Lines) -> u32 {
        lines.lines.len() as u32 * self.theme.line_height(lines.font)
    }

    /// Draws wrapped lines from the top of `area`, as many as fit.
    pub fn draw_lines(
        &mut self,
        mut area: Area,
        lines: &Lines,
        colour: Rgb565,
        align: Align,
    ) -> Result<(), D::Error> {
        for line in &lines.lines {
            let row = area.take_top(self.theme.line_height(lines.font));
            self.text(row, line, lines.font, colour, align)?;
        }
        Ok(())
    }

    /// A wrapped paragraph taken off the top of `rest`: at most `max_lines`, and no more than fit.
    pub fn paragraph(
        &mut self,
        rest: &mut Area,
        text: &str,
        font: Font,
        colour: Rgb565,
        max_lines: usize,
    ) -> Result<(), D::Error> {
        let fit = (rest.h / self.theme.line_height(font)) as usize;
        let lines = self.wrap(text, font, rest.w, max_lines.min(fit));
        let area = rest.take_top(self.height(&lines));
        self.draw_lines(area, &lines, colour, Align::Left)
    }

    /// Blocks of wrapped text, each with its colour, centred as a group in `area`, a margin apart.
    pub fn centred(&mut self, area: Area, blocks: &[(Lines, Rgb565)]) -> Result<(), D::Error> {
        let margins = self.theme.pad * blocks.len().saturating_sub(1) as u32;
        let total: u32 = blocks
            .iter()
            .map(|(lines, _)| self.height(lines))
            .sum::<u32>()
            + margins;
        let mut rest = area;
        rest.take_top(area.h.saturating_sub(total) / 2);
        for (i, (lines, colour)) in blocks.iter().enumerate() {
            if i > 0 {
                rest.take_top(self.theme.pad);
            }
            let block = rest.take_top(self.height(lines));
            self.draw_lines(block, lines, *colour, Align::Centre)?;
        }
        Ok(())
    }

    /// Height of `big_text` in this theme.
    pub fn big_height(&self) -> u32 {
        BIG.character_size.height * self.theme.big_scale
    }

    /// Width of `text` drawn by `big_text` in this theme.
    pub fn big_width(&self, text: &str) -> u32 {
        BIG.character_size.width * self.theme.big_scale * text.chars().count() as u32
    }

    /// Large text (the grade) at the top left of `area`: the biggest mono font magnified,
    /// less if the area is too small for the theme's size.
    pub fn big_text(&mut self, area: Area, text: &str, colour: Rgb565) -> Result<(), D::Error> {
        let chars = text.chars().count().max(1) as u32;
        let scale = self
            .theme
            .big_scale
            .min(area.h / BIG.character_size.height)
            .min(area.w / (BIG.character_size.width * chars));
        if scale == 0 {
            return self.text(area, text, Font::Bold, colour, Align::Left);
        }
        let mut magnified = Magnified {
            target: self.target,
            origin: Point::new(area.x, area.y),
            scale,
        };
        Text::with_baseline(
            text,
            Point::zero(),
            MonoTextStyle::new(BIG, colour),
            Baseline::Top,
        )
        .draw(&mut magnified)?;
        Ok(())
    }

    /// A horizontal bar filled to `fraction` (clamped to 0..1) of `area`'s width.
    pub fn bar(&mut self, area: Area, fraction: f32, colour: Rgb565) -> Result<(), D::Error> {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut track = area;
        let filled = track.take_left((area.w as f32 * fraction).round() as u32);
        self.fill(filled, colour)?;
        self.fill(track, colour::TRACK)
    }

    /// A `width`×`height` picture scaled (nearest neighbour, aspect kept) to fit `area` and centred
    /// in it; `pixel(x, y)` gives its colours. Returns where it was drawn.
    pub fn picture(
        &mut self,
        area: Area,
        (width, height): (u32, u32),
        pixel: impl Fn(u32, u32) -> Rgb565,
    ) -> Result<Area, D::Error> {
        if width == 0 || height == 0 {
            return Ok(Area { w: 0, h: 0, ..area });
        }
        let (aw, ah) = (u64::from(area.w), u64::from(area.h));
        let (sw, sh) = (u64::from(width), u64::from(height));
        let (w, h) = if aw * sh <= ah * sw {
            (aw, aw * sh / sw)
        } else {
            (ah * sw / sh, ah)
        };
        let placed = area.centred(w as u32, h as u32);
        let colours = (0..h).flat_map(|y| {
            let pixel = &pixel;
            (0..w).map(move |x| pixel((x * sw / w) as u32, (y * sh / h) as u32))
        });
        self.target.fill_contiguous(&placed.rect(), colours)?;
        Ok(placed)
    }
}

/// A view of a draw target in which every pixel is a `scale`×`scale` block: big mono text.
struct Magnified<'a, D> {
    target: &'a mut D,
    origin: Point,
    scale: u32,
}

impl<D: DrawTarget<Color = Rgb565>> embedded_graphics::prelude::Dimensions for Magnified<'_, D> {
    fn bounding_box(&self) -> Rectangle {
        let size = self.target.bounding_box().size;
        Rectangle::new(
            Point::zero(),
            Size::new(size.width / self.scale, size.height / self.scale),
        )
    }
}

impl<D: DrawTarget<Color = Rgb565>> DrawTarget for Magnified<'_, D> {
    type Color = Rgb565;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let s = self.scale as i32;
        for Pixel(p, colour) in pixels {
            let block = Rectangle::new(self.origin + p * s, Size::new(self.scale, self.scale));
            self.target.fill_solid(&block, colour)?;
        }
        Ok(())
    }
}

/// Which part of a too-long text to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep the start ("a long senten...").
    End,
    /// Keep both ends, for file names whose end tells them apart ("knee_...0012.png").
    Middle,
}

/// `text` in at most `max` characters, "..." marking what was cut.
pub fn ellipsize(text: &str, max: usize, cut: Cut) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    if max < 4 {
        return chars[..max].iter().collect();
    }
    let keep = max - 3;
    let (head, tail) = match cut {
        Cut::End => (keep, 0),
        Cut::Middle => (keep - keep / 2, keep / 2),
    };
    let start: String = chars[..head].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{start}...{end}")
}

/// Greedy word wrap to `max` characters per line. Words that do not fit break after a '/' or
/// '-' (paths, compounds), or anywhere if they must; explicit newlines are kept.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut pieces = Vec::new();
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if (c == '/' || c == '-') && i > 0 && i + 1 < word.len() {
                    pieces.push(&word[start..=i]);
                    start = i + 1;
                }
            }
            pieces.push(&word[start..]);
            for (i, piece) in pieces.into_iter().enumerate() {
                let glued = i > 0;
                let sep = usize::from(!glued && !line.is_empty());
                let (line_len, piece_len) = (line.chars().count(), piece.chars().count());
                if line_len + sep + piece_len <= max {
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.push_str(piece);
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                let chars: Vec<char> = piece.chars().collect();
                let mut chunks = chars.chunks(max).peekable();
                while let Some(chunk) = chunks.next() {
                    if chunks.peek().is_some() {
                        lines.push(chunk.iter().collect());
                    } else {
                        line = chunk.iter().collect();
                    }
                }
            }
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The fonts are Latin-1: typographic characters outside it get their plain equivalents (the
/// font would draw "?"), and "…" is spelled out.
pub fn latin1(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{2026}' => out.push_str("..."),
            '\u{2013}' | '\u{2014}' | '\u{2212}' => out.push('-'),
            '\u{2018}' | '\u{2019}' => out.push('\''),
            '\u{201C}' | '\u{201D}' => out.push('"'),
            '\u{2264}' => out.push_str("<="),
            '\u{2265}' => out.push_str(">="),
            '\u{2192}' => out.push_str("->"),
            c if u32::from(c) < 0x100 => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_then_after_slashes_then_anywhere() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("/media/usb0/scans", 12), ["/media/usb0/", "scans"]);
        assert_eq!(wrap("contrast-equalised", 14), ["contrast-", "equalised"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\ntwo", 20), ["one", "two"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn ellipsize_keeps_the_end_or_both_ends() {
        assert_eq!(ellipsize("short", 10, Cut::End), "short");
        assert_eq!(ellipsize("a long sentence", 10, Cut::End), "a long ...");
        assert_eq!(
            ellipsize("knee_scan_0012.png", 13, Cut::Middle),
            "knee_...2.png"
        );
        assert_eq!(ellipsize("abcdef", 3, Cut::Middle), "abc");
    }

    #[test]
    fn latin1_spells_out_what_the_fonts_lack() {
        assert_eq!(
            latin1("a \u{2014} b\u{2026} 3\u{d7}4 \u{2265}2 \u{4e2d}"),
            "a - b... 3\u{d7}4 >=2 ?"
        );
    }
}
