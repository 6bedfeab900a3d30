//! SPI TFT panels (ILI9341, ST7789, ST7796, ILI9486) driven from user space: mipidsi knows each
//! controller's init sequence and address window; this module owns the SPI transport and config.

use std::fmt::Display as ShowError;
use std::ops::Range;
use std::path::PathBuf;

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::OriginDimensions;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind, InterfacePixelFormat};
use mipidsi::models::{ILI9341Rgb565, ILI9486Rgb565, Model, ST7789, ST7796};
use mipidsi::options::{ColorInversion, ColorOrder, Orientation, Rotation};
use mipidsi::{Builder, ConfigurationError, InitError};
use serde::{Deserialize, Serialize};

use super::frame::{BufferedPanel, Frame, FrameSink};
use super::gpio::{GpioError, OutputLine};

/// The largest SPI message sent: spidev's default `bufsiz`. Even, so a 16-bit word is never split
/// across two messages (each message is one chip-select cycle, which resets the ILI9486 boards'
/// shift-register word counter).
pub const MAX_MESSAGE: usize = 4096;

/// Supported panel controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpiModel {
    /// 240×320 (2.2"–2.8" modules, Adafruit PiTFT 2.8"); usually wired BGR.
    Ili9341,
    /// 240×320 memory: 1.3"/1.54" 240×240 and 2.0" 320×240 IPS modules; usually needs inversion.
    St7789,
    /// 320×480 (3.5"/4.0" modules) over plain 8-bit SPI.
    St7796,
    /// 320×480 Waveshare-style 3.5" (A) boards: 16-bit words over SPI.
    Ili9486,
}

impl std::fmt::Display for SpiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpiModel::Ili9341 => "ILI9341",
            SpiModel::St7789 => "ST7789",
            SpiModel::St7796 => "ST7796",
            SpiModel::Ili9486 => "ILI9486",
        })
    }
}

/// Each controller's usual wiring quirks, used when the config leaves them out.
struct Quirks {
    colour_order: ColourOrder,
    invert: bool,
    speed_hz: u32,
}

impl SpiModel {
    fn quirks(self) -> Quirks {
        let (colour_order, invert, speed_hz) = match self {
            // Most ILI9341 modules wire the panel's subpixels BGR.
            SpiModel::Ili9341 => (ColourOrder::Bgr, false, 32_000_000),
            // ST7789 IPS glass shows negatives unless INVON is sent.
            SpiModel::St7789 => (ColourOrder::Rgb, true, 32_000_000),
            SpiModel::St7796 => (ColourOrder::Bgr, false, 32_000_000),
            // The shift registers on Waveshare 3.5" (A) boards are specified to 16 MHz (its
            // fbtft overlay uses speed=16000000).
            SpiModel::Ili9486 => (ColourOrder::Bgr, false, 16_000_000),
        };
        Quirks {
            colour_order,
            invert,
            speed_hz,
        }
    }
}

/// Subpixel order of the glass (MADCTL bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

/// `[panel.spi]` in the config file. The visible size is `panel.width`×`panel.height` (after
/// rotation). Line names are as `gpioinfo` shows them; "" means not connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpiPanelConfig {
    pub model: SpiModel,
    /// spidev node (CE0 = /dev/spidev0.0).
    pub device: PathBuf,
    /// Data/command line.
    pub dc: String,
    /// Reset line; "" = not wired (a software reset is sent instead).
    pub reset: String,
    /// Backlight enable line, switched on after the first frame; "" = always on.
    pub backlight: String,
    /// 0, 90, 180 or 270 degrees.
    pub rotation: u16,
    /// Mirror the picture (some modules are mounted behind a mirror or wired flipped).
    pub mirrored: bool,
    /// rgb or bgr; default: the model's usual wiring.
    pub colour_order: Option<ColourOrder>,
    /// Colour inversion (INVON); default: the model's usual glass.
    pub invert: Option<bool>,
    /// Where the visible window starts in the controller's memory, in unrotated pixels (e.g.
    /// 135×240 ST7789 modules: x_offset = 52, y_offset = 40).
    pub x_offset: u16,
    pub y_offset: u16,
    /// SPI clock; default: the model's usual safe speed.
    pub speed_hz: Option<u32>,
    /// SPI mode 0 (default) or 3 (ST7789 modules without a CS pin need 3).
    pub spi_mode: u8,
}

impl Default for SpiPanelConfig {
    fn default() -> Self {
        SpiPanelConfig {
            model: SpiModel::Ili9341,
            device: PathBuf::from("/dev/spidev0.0"),
            dc: "GPIO25".into(),
            reset: "GPIO27".into(),
            backlight: "GPIO18".into(),
            rotation: 90,
            mirrored: false,
            colour_order: None,
            invert: None,
            x_offset: 0,
            y_offset: 0,
            speed_hz: None,
            spi_mode: 0,
        }
    }
}

/// Why the SPI panel could not be started or fed.
#[derive(Debug, thiserror::Error)]
pub enum SpiPanelError {
    /// The spidev node is missing or not accessible.
    #[error(
        "cannot open the panel's SPI device {path}: {source}; enable SPI (dtparam=spi=on in \
         /boot/firmware/config.txt, then reboot), check panel.spi.device and that the service \
         user is in the `spi` group"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The SPI controller refused the mode or clock.
    #[error("cannot set SPI mode {mode} at {speed_hz} Hz on {path}: {source}; check panel.spi.spi_mode and panel.spi.speed_hz")]
    Configure {
        path: PathBuf,
        mode: u8,
        speed_hz: u32,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gpio(#[from] GpioError),
    /// A transfer failed mid-way.
    #[error(
        "SPI transfer to the panel failed: {0}; check the wiring (MOSI, SCLK, CE0, GND) and try \
         a lower panel.spi.speed_hz"
    )]
    Spi(String),
    /// Driving DC, reset or backlight failed.
    #[error("setting the panel's {role} line failed: {detail}; check panel.spi.{role}")]
    Pin { role: &'static str, detail: String },
    /// The configured window does not fit the controller's memory.
    #[error(
        "a {width}×{height} picture rotated {rotation}° at offset ({x_offset}, {y_offset}) does \
         not fit the {model}'s {native_width}×{native_height} memory: check panel.width, \
         panel.height, panel.spi.rotation and panel.spi.x_offset/y_offset"
    )]
    Geometry {
        model: SpiModel,
        width: u32,
        height: u32,
        rotation: u16,
        x_offset: u16,
        y_offset: u16,
        native_width: u16,
        native_height: u16,
    },
    #[error("panel.spi.rotation = {0}: use 0, 90, 180 or 270")]
    Rotation(u16),
    #[error("panel.spi.spi_mode = {0}: use 0 or 3")]
    Mode(u8),
    #[error("the {0} cannot be driven over this interface (a kneescreen bug: please report it)")]
    Unsupported(SpiModel),
}

fn pin_error(role: &'static str, e: impl ShowError) -> SpiPanelError {
    SpiPanelError::Pin {
        role,
        detail: e.to_string(),
    }
}

// The transport is written here rather than taken from mipidsi for three reasons: every SPI
// message must stay within spidev's default 4096-byte limit (`spidev.bufsiz`), the batch buffer is
// owned (no borrowed `&mut [u8]` to keep alive next to the display), and the Waveshare-style
// 3.5" ILI9486 boards need every command and parameter sent as a 16-bit word (their SPI feeds a
// 16-bit parallel bus through shift registers), which mipidsi's SPI interface cannot do.

/// DC/SPI plumbing shared by the 8- and 16-bit interfaces: commands with DC low, parameters and
/// pixels with DC high, pixels gathered into messages of at most `MAX_MESSAGE` bytes.
struct SpiTransport<SPI, DC> {
    spi: SPI,
    dc: DC,
    batch: Vec<u8>,
}

impl<SPI, DC> SpiTransport<SPI, DC>
where
    SPI: SpiDevice,
    SPI::Error: ShowError,
    DC: OutputPin,
    DC::Error: ShowError,
{
    fn new(spi: SPI, dc: DC) -> Self {
        SpiTransport {
            spi,
            dc,
            batch: Vec::with_capacity(MAX_MESSAGE),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SpiPanelError> {
        for chunk in bytes.chunks(MAX_MESSAGE) {
            self.spi
                .write(chunk)
                .map_err(|e| SpiPanelError::Spi(e.to_string()))?;
        }
        Ok(())
    }

    fn command(&mut self, command: &[u8], params: &[u8]) -> Result<(), SpiPanelError> {
        self.dc.set_low().map_err(|e| pin_error("dc", e))?;
        self.write(command)?;
        if !params.is_empty() {
            self.dc.set_high().map_err(|e| pin_error("dc", e))?;
            self.write(params)?;
        }
        Ok(())
    }

    fn data(&mut self, bytes: impl IntoIterator<Item = u8>) -> Result<(), SpiPanelError> {
        self.dc.set_high().map_err(|e| pin_error("dc", e))?;
        for byte in bytes {
            self.batch.push(byte);
            if self.batch.len() == MAX_MESSAGE {
                self.send_batch()?;
            }
        }
        self.send_batch()
    }

    fn send_batch(&mut self) -> Result<(), SpiPanelError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let result = self.spi.write(&self.batch);
        self.batch.clear();
        result.map_err(|e| SpiPanelError::Spi(e.to_string()))
    }
}

/// Panels on a plain 8-bit 4-wire SPI (DBI type C option 3).
struct Spi8<SPI, DC>(SpiTransport<SPI, DC>);

impl<SPI, DC> Interface for Spi8<SPI, DC>
where
    SPI: SpiDevice,
    SPI::Error: ShowError,
    DC: OutputPin,
    DC::Error: ShowError,
{
    type Word = u8;
    type Error = SpiPanelError;
    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), SpiPanelError> {
        self.0.command(&[command], args)
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), SpiPanelError> {
        self.0.data(pixels.into_iter().flatten())
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), SpiPanelError> {
        self.send_pixels(std::iter::repeat_n(pixel, count as usize))
    }
}

/// Boards whose SPI is turned into a 16-bit parallel bus: every command and parameter byte goes
/// out as a big-endian 16-bit word (high byte 0), pixels as one RGB565 word each. The controller
/// sees a 16-bit parallel (DBI type B) interface.
struct Spi16<SPI, DC>(SpiTransport<SPI, DC>);

fn widen(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|&b| [0, b]).collect()
}

impl<SPI, DC> Interface for Spi16<SPI, DC>
where
    SPI: SpiDevice,
    SPI::Error: ShowError,
    DC: OutputPin,
    DC::Error: ShowError,
{
    type Word = u16;
    type Error = SpiPanelError;
    const KIND: InterfaceKind = InterfaceKind::Parallel16Bit;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), SpiPanelError> {
        self.0.command(&[0, command], &widen(args))
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u16; N]>,
    ) -> Result<(), SpiPanelError> {
        self.0
            .data(pixels.into_iter().flatten().flat_map(u16::to_be_bytes))
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u16; N],
        count: u32,
    ) -> Result<(), SpiPanelError> {
        self.send_pixels(std::iter::repeat_n(pixel, count as usize))
    }
}

/// A ready panel with its types erased, so any model/transport fits one `SpiSink`.
trait RowWriter: Send {
    /// Writes full-width `rows` (`pixels` row after row) into the panel's memory.
    fn write_rows(
        &mut self,
        width: u16,
        rows: Range<u16>,
        pixels: &[Rgb565],
    ) -> Result<(), SpiPanelError>;
}

struct Driver<DI, M, RST, BL>
where
    DI: Interface,
    M: Model,
    M::ColorFormat: InterfacePixelFormat<DI::Word>,
    RST: OutputPin,
{
    display: mipidsi::Display<DI, M, RST>,
    backlight: Option<BL>,
    lit: bool,
}

impl<DI, M, RST, BL> RowWriter for Driver<DI, M, RST, BL>
where
    DI: Interface<Error = SpiPanelError> + Send,
    M: Model<ColorFormat = Rgb565> + Send,
    Rgb565: InterfacePixelFormat<DI::Word>,
    RST: OutputPin + Send,
    BL: OutputPin + Send,
    BL::Error: ShowError,
{
    fn write_rows(
        &mut self,
        width: u16,
        rows: Range<u16>,
        pixels: &[Rgb565],
    ) -> Result<(), SpiPanelError> {
        if width == 0 || rows.is_empty() {
            return Ok(());
        }
        self.display.set_pixels(
            0,
            rows.start,
            width - 1,
            rows.end - 1,
            pixels.iter().copied(),
        )?;
        // The backlight comes on only now, so the power-on noise in the panel's memory is
        // never seen.
        if !self.lit {
            if let Some(bl) = &mut self.backlight {
                bl.set_high().map_err(|e| pin_error("backlight", e))?;
            }
            self.lit = true;
        }
        Ok(())
    }
}

/// Where a `SpiPanel` sends its rows.
pub struct SpiSink {
    writer: Box<dyn RowWriter>,
}

impl FrameSink for SpiSink {
    type Error = SpiPanelError;

    fn send(&mut self, frame: &Frame, rows: Range<u32>) -> Result<(), SpiPanelError> {
        // Sizes were checked against the controller (≤ 480) when the panel was opened.
        let width = frame.size().width as u16;
        let band = rows.start as u16..rows.end as u16;
        self.writer.write_rows(width, band, frame.rows(rows))
    }
}

/// An SPI TFT panel: draw off-screen, `flush` sends the changed rows.
pub type SpiPanel = BufferedPanel<SpiSink>;

/// The settings mipidsi needs, resolved from the config and the model's quirks.
struct Setup {
    model: SpiModel,
    width: u32,
    height: u32,
    rotation: u16,
    orientation: Orientation,
    colour_order: ColorOrder,
    inversion: ColorInversion,
    offset: (u16, u16),
}

impl Setup {
    fn new(cfg: &SpiPanelConfig, width: u32, height: u32) -> Result<Setup, SpiPanelError> {
        let quirks = cfg.model.quirks();
        let rotation = match cfg.rotation {
            0 => Rotation::Deg0,
            90 => Rotation::Deg90,
            180 => Rotation::Deg180,
            270 => Rotation::Deg270,
            other => return Err(SpiPanelError::Rotation(other)),
        };
        let mut orientation = Orientation::new().rotate(rotation);
        orientation.mirrored = cfg.mirrored;
        Ok(Setup {
            model: cfg.model,
            width,
            height,
            rotation: cfg.rotation,
            orientation,
            colour_order: match cfg.colour_order.unwrap_or(quirks.colour_order) {
                ColourOrder::Rgb => ColorOrder::Rgb,
                ColourOrder::Bgr => ColorOrder::Bgr,
            },
            inversion: if cfg.invert.unwrap_or(quirks.invert) {
                ColorInversion::Inverted
            } else {
                ColorInversion::Normal
            },
            offset: (cfg.x_offset, cfg.y_offset),
        })
    }

    fn geometry_error(&self, native: (u16, u16)) -> SpiPanelError {
        SpiPanelError::Geometry {
            model: self.model,
            width: self.width,
            height: self.height,
            rotation: self.rotation,
            x_offset: self.offset.0,
            y_offset: self.offset.1,
            native_width: native.0,
            native_height: native.1,
        }
    }

    fn init_failed<P: ShowError>(
        &self,
        e: InitError<SpiPanelError, P>,
        native: (u16, u16),
    ) -> SpiPanelError {
        match e {
            InitError::Interface(e) => e,
            InitError::ResetPin(e) => pin_error("reset", e),
            InitError::InvalidConfiguration(ConfigurationError::UnsupportedInterface) => {
                SpiPanelError::Unsupported(self.model)
            }
            InitError::InvalidConfiguration(_) => self.geometry_error(native),
        }
    }

    /// Initialises the controller (reset, then its init sequence) and returns it ready for rows.
    fn start<M, DI, RST, BL>(
        &self,
        model: M,
        di: DI,
        reset: Option<RST>,
        backlight: Option<BL>,
        delay: &mut impl DelayNs,
    ) -> Result<Box<dyn RowWriter>, SpiPanelError>
    where
        M: Model<ColorFormat = Rgb565> + Send + 'static,
        DI: Interface<Error = SpiPanelError> + Send + 'static,
        Rgb565: InterfacePixelFormat<DI::Word>,
        RST: OutputPin + Send + 'static,
        RST::Error: ShowError,
        BL: OutputPin + Send + 'static,
        BL::Error: ShowError,
    {
        let native = M::FRAMEBUFFER_SIZE;
        // mipidsi takes the size in the controller's unrotated terms.
        let (w, h) = if self.orientation.rotation.is_vertical() {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        };
        let (Ok(w), Ok(h)) = (u16::try_from(w), u16::try_from(h)) else {
            return Err(self.geometry_error(native));
        };
        let builder = Builder::new(model, di)
            .display_size(w, h)
            .display_offset(self.offset.0, self.offset.1)
            .orientation(self.orientation)
            .color_order(self.colour_order)
            .invert_colors(self.inversion);
        let writer: Box<dyn RowWriter> = match reset {
            Some(reset) => Box::new(Driver {
                display: builder
                    .reset_pin(reset)
                    .init(delay)
                    .map_err(|e| self.init_failed(e, native))?,
                backlight,
                lit: false,
            }),
            None => Box::new(Driver {
                display: builder
                    .init(delay)
                    .map_err(|e| self.init_failed(e, native))?,
                backlight,
                lit: false,
            }),
        };
        Ok(writer)
    }
}

impl BufferedPanel<SpiSink> {
    /// Opens the spidev node and GPIO lines named in `cfg` and initialises a `width`×`height`
    /// panel (the size after rotation).
    pub fn open(cfg: &SpiPanelConfig, width: u32, height: u32) -> Result<SpiPanel, SpiPanelError> {
        use linux_embedded_hal::spidev::{SpiModeFlags, Spidev, SpidevOptions};
        // Config mistakes are reported before any device is touched.
        Setup::new(cfg, width, height)?;
        let mode = match cfg.spi_mode {
            0 => SpiModeFlags::SPI_MODE_0,
            3 => SpiModeFlags::SPI_MODE_3,
            other => return Err(SpiPanelError::Mode(other)),
        };
        let speed_hz = cfg.speed_hz.unwrap_or(cfg.model.quirks().speed_hz);
        let mut spidev = Spidev::open(&cfg.device).map_err(|source| SpiPanelError::Open {
            path: cfg.device.clone(),
            source,
        })?;
        let options = SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(speed_hz)
            .mode(mode)
            .build();
        spidev
            .configure(&options)
            .map_err(|source| SpiPanelError::Configure {
                path: cfg.device.clone(),
                mode: cfg.spi_mode,
                speed_hz,
                source,
            })?;
        let dc = OutputLine::open(&cfg.dc, "panel.spi.dc", false)?;
        // Reset idles high (not in reset); the backlight stays dark until the first frame.
        let line = |name: &str, key, high| {
            (!name.is_empty())
                .then(|| OutputLine::open(name, key, high))
                .transpose()
        };
        let reset = line(&cfg.reset, "panel.spi.reset", true)?;
        let backlight = line(&cfg.backlight, "panel.spi.backlight", false)?;
        let spi = linux_embedded_hal::SpidevDevice(spidev);
        let mut delay = linux_embedded_hal::Delay;
        Self::with_transport(cfg, width, height, spi, dc, reset, backlight, &mut delay)
    }

    /// Initialises a panel over any SPI device and pins (tests pass recording fakes).
    #[allow(clippy::too_many_arguments)]
    pub fn with_transport<SPI, PIN>(
        cfg: &SpiPanelConfig,
        width: u32,
        height: u32,
        spi: SPI,
        dc: PIN,
        reset: Option<PIN>,
        backlight: Option<PIN>,
        delay: &mut impl DelayNs,
    ) -> Result<SpiPanel, SpiPanelError>
    where
        SPI: SpiDevice + Send + 'static,
        SPI::Error: ShowError,
        PIN: OutputPin + Send + 'static,
        PIN::Error: ShowError,
    {
        let setup = Setup::new(cfg, width, height)?;
        let transport = SpiTransport::new(spi, dc);
        let writer = match cfg.model {
            SpiModel::Ili9341 => {
                setup.start(ILI9341Rgb565, Spi8(transport), reset, backlight, delay)
            }
            SpiModel::St7789 => setup.start(ST7789, Spi8(transport), reset, backlight, delay),
            SpiModel::St7796 => setup.start(ST7796, Spi8(transport), reset, backlight, delay),
            SpiModel::Ili9486 => {
                setup.start(ILI9486Rgb565, Spi16(transport), reset, backlight, delay)
            }
        }?;
        Ok(BufferedPanel::with_sink(width, height, SpiSink { writer }))
    }
}
