//! Display and button backends: the `Panel` seam every display implements, the button's events,
//! the in-memory virtual panel, and the Pi's SPI, framebuffer and GPIO backends chosen by config.

use std::path::PathBuf;

use embedded_graphics::{
    pixelcolor::Rgb565,
    prelude::{DrawTarget, OriginDimensions, Size},
    primitives::Rectangle,
    Pixel,
};
use serde::{Deserialize, Serialize};

pub mod button; // short/long press from edge times, GPIO and keyboard sources
pub mod frame; // off-screen frame; sends only changed rows to a display
pub mod framebuffer; // /dev/fbN (HDMI, DSI, kernel-driven panels)
pub mod gpio; // GPIO lines by name (gpiocdev)
pub mod panel; // the Panel seam every display implements
pub mod spi_panel; // SPI TFT panels (mipidsi)
pub mod test_pattern; // bring-up picture for checking a panel's config
pub mod virtual_panel; // in memory: PNG for the web console and panel.png

pub use button::{spawn_gpio_button, spawn_keyboard, ButtonEvent, PressClassifier};
pub use framebuffer::{FbError, FbPanel};
pub use panel::Panel;
pub use spi_panel::{SpiPanel, SpiPanelConfig, SpiPanelError};
pub use test_pattern::draw_test_pattern;
pub use virtual_panel::VirtualPanel;

/// Which display backend drives the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// In memory, mirrored to panel.png (laptops, tests).
    Virtual,
    /// Linux framebuffer (`fb_device`): HDMI, DSI or a kernel-driven panel.
    Fb,
    /// SPI TFT driven from user space (`[panel.spi]`).
    Spi,
}

/// `[panel]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanelConfig {
    pub kind: PanelKind,
    /// Visible size after rotation (virtual and SPI; a framebuffer has its own).
    pub width: u32,
    pub height: u32,
    pub fb_device: PathBuf,
    pub spi: SpiPanelConfig,
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            kind: PanelKind::Virtual,
            width: 320,
            height: 240,
            fb_device: PathBuf::from("/dev/fb0"),
            spi: SpiPanelConfig::default(),
        }
    }
}

/// Why no panel could be opened.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error(transparent)]
    Spi(#[from] SpiPanelError),
    #[error(transparent)]
    Framebuffer(#[from] FbError),
    #[error("panel.width × panel.height = {0}×{1}: use 1…4096 pixels each way")]
    Size(u32, u32),
}

/// Whichever panel the config chose; the views draw into it like into any `DrawTarget`.
pub enum AnyPanel {
    Virtual(VirtualPanel),
    Spi(SpiPanel),
    Framebuffer(FbPanel),
}

/// Opens the panel `cfg` describes. `mirror` is where a virtual panel writes its PNG.
pub fn open_panel(cfg: &PanelConfig, mirror: Option<PathBuf>) -> Result<AnyPanel, PanelError> {
    let sane = |n: u32| (1..=4096).contains(&n);
    if cfg.kind != PanelKind::Fb && !(sane(cfg.width) && sane(cfg.height)) {
        return Err(PanelError::Size(cfg.width, cfg.height));
    }
    Ok(match cfg.kind {
        PanelKind::Virtual => AnyPanel::Virtual(VirtualPanel::new(cfg.width, cfg.height, mirror)),
        PanelKind::Spi => AnyPanel::Spi(SpiPanel::open(&cfg.spi, cfg.width, cfg.height)?),
        PanelKind::Fb => AnyPanel::Framebuffer(FbPanel::open(&cfg.fb_device)?),
    })
}

/// Runs `$body` with `$p` bound to whichever panel `$panel` holds.
macro_rules! each_panel {
    ($panel:expr, $p:ident => $body:expr) => {
        match $panel {
            AnyPanel::Virtual($p) => $body,
            AnyPanel::Spi($p) => $body,
            AnyPanel::Framebuffer($p) => $body,
        }
    };
}

impl OriginDimensions for AnyPanel {
    fn size(&self) -> Size {
        each_panel!(self, p => p.size())
    }
}

impl DrawTarget for AnyPanel {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        each_panel!(self, p => p.draw_iter(pixels))
    }

    fn fill_contiguous<I>(&mut self, area: &Rectangle, colours: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        each_panel!(self, p => p.fill_contiguous(area, colours))
    }

    fn fill_solid(&mut self, area: &Rectangle, colour: Self::Color) -> Result<(), Self::Error> {
        each_panel!(self, p => p.fill_solid(area, colour))
    }

    fn clear(&mut self, colour: Self::Color) -> Result<(), Self::Error> {
        each_panel!(self, p => p.clear(colour))
    }
}

impl Panel for AnyPanel {
    fn flush(&mut self) -> anyhow::Result<()> {
        each_panel!(self, p => p.flush())
    }

    fn frame_png(&self) -> Option<Vec<u8>> {
        each_panel!(self, p => p.frame_png())
    }
}
