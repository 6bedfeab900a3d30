//! Hardware backends without hardware: SPI panels against a recording fake SPI device and fake
//! pins, the framebuffer against a temporary file, the button logic from synthetic edge times.

use std::convert::Infallible;
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_graphics::{
    pixelcolor::{raw::RawU16, Rgb565},
    prelude::*,
    primitives::{PrimitiveStyle, Rectangle},
};
use embedded_hal::spi::{ErrorKind, Operation, SpiDevice};
use kneescreen::hw::button::{key_event, Edge, PressClassifier};
use kneescreen::hw::framebuffer::{FbBitfield, FbFixScreeninfo, FbVarScreeninfo};
use kneescreen::hw::spi_panel::{SpiModel, MAX_MESSAGE};
use kneescreen::hw::{
    open_panel, AnyPanel, ButtonEvent, FbPanel, Panel, PanelConfig, PanelError, PanelKind,
    SpiPanel, SpiPanelConfig, SpiPanelError,
};

// ---------------------------------------------------------------------------------------------
// SPI: a recording fake bus

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Pin(&'static str, bool),
    Write(Vec<u8>),
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Op>>>);

impl Log {
    fn push(&self, op: Op) {
        self.0.lock().unwrap().push(op);
    }
    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug)]
struct BusFault;

impl std::fmt::Display for BusFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bus fault")
    }
}

impl embedded_hal::spi::Error for BusFault {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

struct FakeSpi {
    log: Log,
    fail: Arc<Mutex<bool>>,
}

impl embedded_hal::spi::ErrorType for FakeSpi {
    type Error = BusFault;
}

impl SpiDevice for FakeSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), BusFault> {
        if *self.fail.lock().unwrap() {
            return Err(BusFault);
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => self.log.push(Op::Write(bytes.to_vec())),
                other => panic!("the panel only ever writes, got {other:?}"),
            }
        }
        Ok(())
    }
}

struct FakePin {
    name: &'static str,
    log: Log,
}

impl embedded_hal::digital::ErrorType for FakePin {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FakePin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.log.push(Op::Pin(self.name, false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.log.push(Op::Pin(self.name, true));
        Ok(())
    }
}

struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

struct Rig {
    panel: SpiPanel,
    log: Log,
    fail: Arc<Mutex<bool>>,
}

fn rig(cfg: &SpiPanelConfig, width: u32, height: u32, reset: bool) -> Result<Rig, SpiPanelError> {
    let log = Log::default();
    let fail = Arc::new(Mutex::new(false));
    let pin = |name| FakePin {
        name,
        log: log.clone(),
    };
    let spi = FakeSpi {
        log: log.clone(),
        fail: fail.clone(),
    };
    let reset = reset.then(|| pin("reset"));
    let panel = SpiPanel::with_transport(
        cfg,
        width,
        height,
        spi,
        pin("dc"),
        reset,
        Some(pin("backlight")),
        &mut NoDelay,
    )?;
    Ok(Rig { panel, log, fail })
}

fn config(model: SpiModel, rotation: u16) -> SpiPanelConfig {
    SpiPanelConfig {
        model,
        rotation,
        ..SpiPanelConfig::default()
    }
}

/// A command as the controller sees it: the opcode and its parameter bytes. With `wide`, the
/// 16-bit words of the ILI9486 boards are narrowed back (commands and parameters carry their
/// byte in the low half; pixel words are kept whole).
#[derive(Debug, Clone, PartialEq)]
struct Command {
    op: u8,
    params: Vec<u8>,
}

fn decode(ops: &[Op], wide: bool) -> Vec<Command> {
    let mut dc_high = false;
    let mut out: Vec<Command> = Vec::new();
    for op in ops {
        match op {
            Op::Pin("dc", level) => dc_high = *level,
            Op::Pin(..) => {}
            Op::Write(bytes) if !dc_high => {
                let op = if wide {
                    assert_eq!(bytes.len(), 2, "a 16-bit command is one word");
                    assert_eq!(
                        bytes[0], 0,
                        "command words carry the opcode in the low byte"
                    );
                    bytes[1]
                } else {
                    assert_eq!(bytes.len(), 1, "an 8-bit command is one byte");
                    bytes[0]
                };
                out.push(Command {
                    op,
                    params: Vec::new(),
                });
            }
            Op::Write(bytes) => {
                let last = out.last_mut().expect("data before any command");
                if wide && last.op != 0x2C {
                    for word in bytes.chunks(2) {
                        assert_eq!(word[0], 0, "parameter words carry the byte in the low half");
                        last.params.push(word[1]);
                    }
                } else {
                    last.params.extend_from_slice(bytes);
                }
            }
        }
    }
    out
}

fn cmd(op: u8, params: &[u8]) -> Command {
    Command {
        op,
        params: params.to_vec(),
    }
}

fn writes(ops: &[Op]) -> Vec<usize> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Write(b) => Some(b.len()),
            _ => None,
        })
        .collect()
}

/// CASET/RASET parameters for columns/rows `start..=end` (big-endian 16-bit pairs).
fn window(start: u16, end: u16) -> Vec<u8> {
    [start.to_be_bytes(), end.to_be_bytes()].concat()
}

/// The address window and pixel bytes of one frame transfer.
fn frame_transfer(commands: &[Command]) -> (Vec<u8>, Vec<u8>, usize) {
    assert_eq!(
        commands.len(),
        3,
        "a frame is CASET, RASET, RAMWR: {commands:?}"
    );
    assert_eq!(
        (commands[0].op, commands[1].op, commands[2].op),
        (0x2A, 0x2B, 0x2C)
    );
    (
        commands[0].params.clone(),
        commands[1].params.clone(),
        commands[2].params.len(),
    )
}

// Init sequences, checked against the controllers' datasheets. mipidsi sends them; these tests
// pin them down so a dependency update cannot silently change what the glass receives.

#[test]
fn ili9341_init_follows_the_datasheet_and_a_frame_fills_the_window() {
    let mut rig = rig(&config(SpiModel::Ili9341, 90), 320, 240, true).unwrap();
    let ops = rig.log.take();
    // Hardware reset before any command (ILI9341 datasheet, "Reset Timing": RESX low ≥ 10 µs,
    // then 5 ms before the first command).
    assert_eq!(
        &ops[..2],
        &[Op::Pin("reset", false), Op::Pin("reset", true)]
    );
    assert_eq!(
        decode(&ops, false),
        vec![
            // Memory Access Control (36h): MX|MV turn the 240×320 memory to landscape; the BGR
            // bit (08h) is set because ILI9341 modules are wired BGR.
            cmd(0x36, &[0x68]),
            // Display Inversion Control (B4h): line inversion in every mode.
            cmd(0xB4, &[0x00]),
            cmd(0x20, &[]),     // Display Inversion OFF (20h)
            cmd(0x3A, &[0x55]), // Pixel Format Set (3Ah): 16 bits per pixel on the interface
            cmd(0x13, &[]),     // Normal Display Mode ON (13h)
            cmd(0x11, &[]),     // Sleep Out (11h), 120 ms after any Sleep In
            cmd(0x29, &[]),     // Display ON (29h), after Sleep Out's 120 ms
        ]
    );
    assert!(
        !ops.contains(&Op::Pin("backlight", true)),
        "the backlight stays off until a frame is shown"
    );

    rig.panel.clear(Rgb565::RED).unwrap();
    rig.panel.flush().unwrap();
    let ops = rig.log.take();
    let (caset, raset, pixel_bytes) = frame_transfer(&decode(&ops, false));
    assert_eq!(caset, window(0, 319));
    assert_eq!(raset, window(0, 239));
    assert_eq!(pixel_bytes, 320 * 240 * 2);
    assert!(
        writes(&ops).iter().all(|&n| n <= MAX_MESSAGE),
        "{:?}",
        writes(&ops)
    );
    // RGB565 goes out big-endian: red is F8 00.
    let first_pixel = ops.iter().rev().find_map(|op| match op {
        Op::Write(b) if b.len() > 4 => Some(b[..2].to_vec()),
        _ => None,
    });
    assert_eq!(first_pixel, Some(vec![0xF8, 0x00]));
    assert_eq!(ops.last(), Some(&Op::Pin("backlight", true)));
}

#[test]
fn st7789_240x240_without_reset_line_is_soft_reset_and_inverted() {
    let mut rig = rig(&config(SpiModel::St7789, 0), 240, 240, false).unwrap();
    assert_eq!(
        decode(&rig.log.take(), false),
        vec![
            // ST7789VW datasheet, system function commands:
            cmd(0x01, &[]),     // SWRESET (01h): no reset line wired
            cmd(0x11, &[]),     // SLPOUT (11h)
            cmd(0x36, &[0x00]), // MADCTL (36h): portrait, RGB
            cmd(0x21, &[]),     // INVON (21h): IPS glass shows a negative without it
            cmd(0x3A, &[0x55]), // COLMOD (3Ah): 65K colours, 16 bits per pixel
            cmd(0x13, &[]),     // NORON (13h)
            cmd(0x29, &[]),     // DISPON (29h)
        ]
    );
    rig.panel.clear(Rgb565::BLUE).unwrap();
    rig.panel.flush().unwrap();
    let ops = rig.log.take();
    let (caset, raset, pixel_bytes) = frame_transfer(&decode(&ops, false));
    assert_eq!((caset, raset), (window(0, 239), window(0, 239)));
    assert_eq!(pixel_bytes, 240 * 240 * 2);
    assert!(writes(&ops).iter().all(|&n| n <= MAX_MESSAGE));
}

#[test]
fn st7789_240x240_upside_down_addresses_the_far_end_of_its_320_rows() {
    // The 240×240 glass sits on rows 0..240 of a 240×320 memory; rotated 180° the window must
    // move to rows 80..320, or the picture is cut and wraps.
    let mut rig = rig(&config(SpiModel::St7789, 180), 240, 240, true).unwrap();
    rig.log.take();
    rig.panel.clear(Rgb565::GREEN).unwrap();
    rig.panel.flush().unwrap();
    let (caset, raset, _) = frame_transfer(&decode(&rig.log.take(), false));
    assert_eq!((caset, raset), (window(0, 239), window(80, 319)));
}

#[test]
fn st7789_320x240_landscape() {
    let mut rig = rig(&config(SpiModel::St7789, 90), 320, 240, true).unwrap();
    let init = decode(&rig.log.take(), false);
    assert_eq!(init[1], cmd(0x36, &[0x60]), "MX|MV, RGB");
    rig.panel.clear(Rgb565::WHITE).unwrap();
    rig.panel.flush().unwrap();
    let ops = rig.log.take();
    let (caset, raset, pixel_bytes) = frame_transfer(&decode(&ops, false));
    assert_eq!((caset, raset), (window(0, 319), window(0, 239)));
    assert_eq!(pixel_bytes, 320 * 240 * 2);
    assert!(writes(&ops).iter().all(|&n| n <= MAX_MESSAGE));
}

#[test]
fn st7796_480x320_over_8_bit_spi() {
    let mut rig = rig(&config(SpiModel::St7796, 90), 480, 320, true).unwrap();
    assert_eq!(
        decode(&rig.log.take(), false),
        vec![
            // ST7796S datasheet, same DCS commands as the ST7789: SLPOUT (11h), MADCTL (36h:
            // MX|MV, BGR), INVOFF (20h), COLMOD (3Ah: 16 bpp), NORON (13h), DISPON (29h).
            cmd(0x11, &[]),
            cmd(0x36, &[0x68]),
            cmd(0x20, &[]),
            cmd(0x3A, &[0x55]),
            cmd(0x13, &[]),
            cmd(0x29, &[]),
        ]
    );
    rig.panel.clear(Rgb565::CYAN).unwrap();
    rig.panel.flush().unwrap();
    let ops = rig.log.take();
    let (caset, raset, pixel_bytes) = frame_transfer(&decode(&ops, false));
    assert_eq!((caset, raset), (window(0, 479), window(0, 319)));
    assert_eq!(pixel_bytes, 480 * 320 * 2);
    // 307200 bytes is exactly 75 full messages: no empty trailing write either.
    assert!(writes(&ops).iter().all(|&n| (1..=MAX_MESSAGE).contains(&n)));
}

#[test]
fn ili9486_sends_16_bit_words() {
    let mut rig = rig(&config(SpiModel::Ili9486, 90), 480, 320, true).unwrap();
    let ops = rig.log.take();
    assert_eq!(
        decode(&ops, true),
        vec![
            // ILI9486 datasheet: Sleep OUT (11h), Interface Pixel Format (3Ah: 16 bpp on the
            // 16-bit bus), Memory Access Control (36h: MX|MV, BGR as Waveshare 3.5" (A) boards
            // are wired), Display Inversion OFF (20h), Display Function Control (B6h: 02 02 3B,
            // (3Bh + 1) × 8 = 480 lines), Normal Display Mode ON (13h), Display ON (29h).
            cmd(0x11, &[]),
            cmd(0x3A, &[0x55]),
            cmd(0x36, &[0x68]),
            cmd(0x20, &[]),
            cmd(0xB6, &[0x02, 0x02, 0x3B]),
            cmd(0x13, &[]),
            cmd(0x29, &[]),
        ]
    );
    rig.panel
        .fill_solid(&Rectangle::new(Point::zero(), Size::new(1, 1)), Rgb565::RED)
        .unwrap();
    rig.panel.flush().unwrap();
    let ops = rig.log.take();
    let commands = decode(&ops, true);
    let (caset, raset, pixel_bytes) = frame_transfer(&commands);
    assert_eq!((caset, raset), (window(0, 479), window(0, 319)));
    assert_eq!(pixel_bytes, 480 * 320 * 2);
    assert_eq!(&commands[2].params[..4], &[0xF8, 0x00, 0x00, 0x00]);
    // Whole words only, so the boards' shift registers never get out of step.
    assert!(writes(&ops).iter().all(|&n| n <= MAX_MESSAGE && n % 2 == 0));
}

#[test]
fn a_flush_sends_only_the_rows_that_changed() {
    let mut rig = rig(&config(SpiModel::Ili9341, 90), 320, 240, true).unwrap();
    rig.panel.clear(Rgb565::BLACK).unwrap();
    rig.panel.flush().unwrap();
    rig.log.take();

    // Redrawing the same picture sends nothing.
    rig.panel.clear(Rgb565::BLACK).unwrap();
    rig.panel.flush().unwrap();
    assert_eq!(rig.log.take(), vec![]);

    Rectangle::new(Point::new(5, 10), Size::new(20, 10))
        .into_styled(PrimitiveStyle::with_fill(Rgb565::YELLOW))
        .draw(&mut rig.panel)
        .unwrap();
    rig.panel.flush().unwrap();
    let (caset, raset, pixel_bytes) = frame_transfer(&decode(&rig.log.take(), false));
    assert_eq!((caset, raset), (window(0, 319), window(10, 19)));
    assert_eq!(pixel_bytes, 320 * 10 * 2);
}

#[test]
fn a_failed_transfer_is_reported_and_retried_on_the_next_flush() {
    let mut rig = rig(&config(SpiModel::Ili9341, 90), 320, 240, true).unwrap();
    rig.log.take();
    *rig.fail.lock().unwrap() = true;
    rig.panel.clear(Rgb565::RED).unwrap();
    let e = rig.panel.flush().unwrap_err();
    assert!(e.to_string().contains("wiring"), "{e}");
    *rig.fail.lock().unwrap() = false;
    rig.panel.flush().unwrap();
    let (_, raset, pixel_bytes) = frame_transfer(&decode(&rig.log.take(), false));
    assert_eq!((raset, pixel_bytes), (window(0, 239), 320 * 240 * 2));
}

#[test]
fn a_window_larger_than_the_controller_is_refused_with_the_keys_to_fix() {
    let Err(e) = rig(&config(SpiModel::Ili9341, 90), 480, 320, true) else {
        panic!("480×320 cannot fit an ILI9341");
    };
    assert!(matches!(e, SpiPanelError::Geometry { .. }), "{e:?}");
    assert!(e.to_string().contains("panel.width"), "{e}");
    let Err(e) = rig(&config(SpiModel::Ili9341, 45), 320, 240, true) else {
        panic!("45° is not a rotation");
    };
    assert!(e.to_string().contains("0, 90, 180 or 270"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Framebuffer: a temporary file stands in for /dev/fbN

fn field(offset: u32, length: u32) -> FbBitfield {
    FbBitfield {
        offset,
        length,
        msb_right: 0,
    }
}

/// Screeninfo as a driver reports it: `bpp` with the given channels, `pad` bytes of stride
/// padding per row, `yoffset` rows panned.
fn screeninfo(
    width: u32,
    height: u32,
    bpp: u32,
    channels: [FbBitfield; 4],
    pad: u32,
    yoffset: u32,
) -> (FbVarScreeninfo, FbFixScreeninfo) {
    let [red, green, blue, transp] = channels;
    let var = FbVarScreeninfo {
        xres: width,
        yres: height,
        xres_virtual: width,
        yres_virtual: height + yoffset,
        yoffset,
        bits_per_pixel: bpp,
        red,
        green,
        blue,
        transp,
        ..Default::default()
    };
    let fix = FbFixScreeninfo {
        smem_len: (width * bpp / 8 + pad) * (height + yoffset),
        visual: 2, // FB_VISUAL_TRUECOLOR
        line_length: width * bpp / 8 + pad,
        ..Default::default()
    };
    (var, fix)
}

const RGB565: [FbBitfield; 4] = [
    FbBitfield {
        offset: 11,
        length: 5,
        msb_right: 0,
    },
    FbBitfield {
        offset: 5,
        length: 6,
        msb_right: 0,
    },
    FbBitfield {
        offset: 0,
        length: 5,
        msb_right: 0,
    },
    FbBitfield {
        offset: 0,
        length: 0,
        msb_right: 0,
    },
];

struct FbRig {
    panel: FbPanel,
    file: tempfile::NamedTempFile,
}

impl FbRig {
    fn new(var: &FbVarScreeninfo, fix: &FbFixScreeninfo) -> Result<FbRig, kneescreen::hw::FbError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        // Whatever was in video memory before: 0xAA, so untouched bytes are visible.
        std::fs::write(file.path(), vec![0xAA; fix.smem_len as usize]).unwrap();
        let handle = File::options()
            .read(true)
            .write(true)
            .open(file.path())
            .unwrap();
        let panel = FbPanel::from_file(handle, file.path(), var, fix, u64::from(fix.smem_len))?;
        Ok(FbRig { panel, file })
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        File::open(self.file.path())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

#[test]
fn framebuffer_16_bpp_rgb565_with_stride_padding() {
    let (var, fix) = screeninfo(4, 3, 16, RGB565, 4, 0);
    let mut fb = FbRig::new(&var, &fix).unwrap();
    assert_eq!(fb.panel.size(), Size::new(4, 3));
    Pixel(Point::new(0, 0), Rgb565::RED)
        .draw(&mut fb.panel)
        .unwrap();
    Pixel(Point::new(1, 0), Rgb565::GREEN)
        .draw(&mut fb.panel)
        .unwrap();
    Pixel(Point::new(3, 2), Rgb565::BLUE)
        .draw(&mut fb.panel)
        .unwrap();
    fb.panel.flush().unwrap();
    let pad = [0xAA; 4];
    let black = [0, 0];
    #[rustfmt::skip]
    let expected = [
        &[0x00, 0xF8][..], &[0xE0, 0x07], &black, &black, &pad, // row 0: red F800, green 07E0 (LE)
        &black, &black, &black, &black, &pad,
        &black, &black, &black, &[0x1F, 0x00], &pad, // row 2: blue 001F
    ]
    .concat();
    assert_eq!(fb.bytes(), expected);
}

#[test]
fn every_rgb565_colour_survives_16_bpp_packing_unchanged() {
    let (var, fix) = screeninfo(1, 1, 16, RGB565, 0, 0);
    let layout = kneescreen::hw::framebuffer::FbLayout::from_screeninfo(
        std::path::Path::new("fb"),
        &var,
        &fix,
        2,
    )
    .unwrap();
    for raw in 0..=u16::MAX {
        let colour = Rgb565::from(RawU16::new(raw));
        assert_eq!(layout.pack(colour), u32::from(raw), "{raw:#06x}");
    }
}

#[test]
fn framebuffer_32_bpp_xrgb8888_and_xbgr8888_follow_the_channel_offsets() {
    let xrgb = [field(16, 8), field(8, 8), field(0, 8), field(0, 0)];
    let (var, fix) = screeninfo(2, 1, 32, xrgb, 0, 0);
    let mut fb = FbRig::new(&var, &fix).unwrap();
    Pixel(Point::new(0, 0), Rgb565::RED)
        .draw(&mut fb.panel)
        .unwrap();
    // 5/6/5-bit values scale to 8 bits with rounding: 16/31 → 0x84, 32/63 → 0x82, 8/31 → 0x42.
    Pixel(Point::new(1, 0), Rgb565::new(16, 32, 8))
        .draw(&mut fb.panel)
        .unwrap();
    fb.panel.flush().unwrap();
    assert_eq!(fb.bytes(), [0x00, 0x00, 0xFF, 0x00, 0x42, 0x82, 0x84, 0x00]);

    // Blue and red swapped, with an alpha byte that must come out opaque.
    let xbgr = [field(0, 8), field(8, 8), field(16, 8), field(24, 8)];
    let (var, fix) = screeninfo(2, 1, 32, xbgr, 0, 0);
    let mut fb = FbRig::new(&var, &fix).unwrap();
    Pixel(Point::new(0, 0), Rgb565::RED)
        .draw(&mut fb.panel)
        .unwrap();
    fb.panel.flush().unwrap();
    assert_eq!(fb.bytes(), [0xFF, 0x00, 0x00, 0xFF, 0x00, 0x00, 0x00, 0xFF]);
}

#[test]
fn framebuffer_writes_only_changed_rows_of_the_panned_screen() {
    // Double-buffered driver showing its second page: visible row 0 is memory row 2.
    let (var, fix) = screeninfo(2, 2, 16, RGB565, 0, 2);
    let mut fb = FbRig::new(&var, &fix).unwrap();
    fb.panel.flush().unwrap();
    let mut expected = vec![0xAA; 8];
    expected.extend([0; 8]);
    assert_eq!(
        fb.bytes(),
        expected,
        "first flush paints the visible page only"
    );

    std::fs::write(fb.file.path(), vec![0xAA; 16]).unwrap();
    Pixel(Point::new(1, 1), Rgb565::WHITE)
        .draw(&mut fb.panel)
        .unwrap();
    fb.panel.flush().unwrap();
    let mut expected = vec![0xAA; 12];
    expected.extend([0, 0, 0xFF, 0xFF]);
    assert_eq!(fb.bytes(), expected, "only the changed row is rewritten");
}

#[test]
fn framebuffer_formats_we_cannot_draw_are_refused_with_the_fix() {
    let (var, fix) = screeninfo(4, 4, 8, RGB565, 0, 0);
    let e = FbRig::new(&var, &fix)
        .err()
        .expect("8 bpp is palette colour");
    assert!(e.to_string().contains("framebuffer_depth"), "{e}");

    let (var, mut fix) = screeninfo(4, 4, 16, RGB565, 0, 0);
    fix.smem_len = 16;
    let file = tempfile::tempfile().unwrap();
    let e = FbPanel::from_file(file, std::path::Path::new("/dev/fb9"), &var, &fix, 16)
        .err()
        .expect("memory too small for the screen");
    assert!(e.to_string().contains("/dev/fb9"), "{e}");
}

#[test]
fn screeninfo_structs_match_the_kernel_abi() {
    // linux/fb.h: 40 × u32; the fix struct has two `unsigned long`s.
    assert_eq!(std::mem::size_of::<FbVarScreeninfo>(), 160);
    let fix = if cfg!(target_pointer_width = "64") {
        80
    } else {
        68
    };
    assert_eq!(std::mem::size_of::<FbFixScreeninfo>(), fix);
}

// ---------------------------------------------------------------------------------------------
// Button: press classification from synthetic edge times

const MS: u64 = 1_000_000;

fn classifier() -> PressClassifier {
    PressClassifier::new(Duration::from_millis(800), Duration::from_millis(30))
}

/// Plays `edges` (times in ms) the way the driver thread does — waking at each deadline and at
/// each edge — until `end_ms`; returns the events with the time (ms) they were reported.
fn play(edges: &[(u64, Edge)], end_ms: u64) -> Vec<(u64, ButtonEvent)> {
    let mut c = classifier();
    let mut out = Vec::new();
    let wake = |c: &mut PressClassifier, until: u64, out: &mut Vec<(u64, ButtonEvent)>| {
        while let Some(d) = c.deadline().filter(|&d| d <= until) {
            out.extend(c.tick(d).map(|e| (d / MS, e)));
        }
    };
    for &(t, edge) in edges {
        wake(&mut c, t * MS, &mut out);
        out.extend(c.edge(edge, t * MS).map(|e| (t, e)));
    }
    wake(&mut c, end_ms * MS, &mut out);
    out
}

use Edge::{Press, Release};

#[test]
fn short_press_is_next_once_the_release_is_stable() {
    assert_eq!(
        play(&[(1000, Press), (1200, Release)], 5000),
        vec![(1230, ButtonEvent::Next)]
    );
}

#[test]
fn long_press_is_previous_while_still_held() {
    assert_eq!(
        play(&[(1000, Press), (4000, Release)], 9000),
        vec![(1800, ButtonEvent::Previous)],
        "reported at the threshold, nothing more on release"
    );
}

#[test]
fn glitches_shorter_than_the_debounce_are_ignored() {
    assert_eq!(play(&[(1000, Press), (1010, Release)], 5000), vec![]);
    assert_eq!(
        play(
            &[
                (1000, Press),
                (1029, Release),
                (2000, Press),
                (2001, Release)
            ],
            5000
        ),
        vec![]
    );
}

#[test]
fn a_bounce_storm_is_one_press() {
    // Contacts chatter for ~10 ms on the way down and on the way up.
    let mut edges = Vec::new();
    for i in 0..5 {
        edges.push((1000 + 2 * i, Press));
        edges.push((1001 + 2 * i, Release));
    }
    edges.push((1010, Press));
    for i in 0..5 {
        edges.push((1300 + 2 * i, Release));
        edges.push((1301 + 2 * i, Press));
    }
    edges.push((1310, Release));
    assert_eq!(play(&edges, 5000), vec![(1340, ButtonEvent::Next)]);
}

#[test]
fn a_brief_release_in_mid_press_does_not_split_it() {
    assert_eq!(
        play(
            &[
                (1000, Press),
                (1100, Release),
                (1110, Press),
                (1400, Release)
            ],
            5000
        ),
        vec![(1430, ButtonEvent::Next)]
    );
    // …nor turn a long press into a short one.
    assert_eq!(
        play(
            &[
                (1000, Press),
                (1500, Release),
                (1520, Press),
                (3000, Release)
            ],
            5000
        ),
        vec![(1800, ButtonEvent::Previous)]
    );
}

#[test]
fn missed_edges_neither_lose_a_press_nor_invent_one() {
    // Release edge lost: the second press closes the first.
    assert_eq!(
        play(&[(1000, Press), (1200, Press), (1400, Release)], 5000),
        vec![(1200, ButtonEvent::Next), (1430, ButtonEvent::Next)]
    );
    // Press edge lost: a lone release is not a press.
    assert_eq!(play(&[(1000, Release)], 5000), vec![]);
}

#[test]
fn a_late_tick_still_reports_a_long_press_as_previous() {
    let mut c = classifier();
    assert_eq!(c.edge(Press, 0), None);
    assert_eq!(c.deadline(), Some(800 * MS));
    // Held 900 ms with no tick at 800 ms (a busy thread): the release still counts as long.
    assert_eq!(c.edge(Release, 900 * MS), Some(ButtonEvent::Previous));
    assert_eq!(c.tick(930 * MS), None, "and only once");
    assert!(!c.is_pressed());
    assert_eq!(c.deadline(), None);
}

#[test]
fn a_missing_button_line_names_the_config_key_and_the_group() {
    let (tx, _rx) = std::sync::mpsc::channel::<ButtonEvent>();
    let e = kneescreen::hw::spawn_gpio_button(
        "KNEESCREEN_NO_SUCH_LINE",
        Duration::from_millis(800),
        Duration::from_millis(30),
        tx,
    )
    .expect_err("no such GPIO line");
    let message = e.to_string();
    assert!(
        message.contains("button.line") && message.contains("`gpio` group"),
        "{message}"
    );
}

#[test]
fn keyboard_lines_map_to_button_events() {
    assert_eq!(key_event(""), Some(ButtonEvent::Next));
    assert_eq!(key_event(" "), Some(ButtonEvent::Next));
    assert_eq!(key_event("n\n"), Some(ButtonEvent::Next));
    assert_eq!(key_event("P"), Some(ButtonEvent::Previous));
    assert_eq!(key_event("x"), None);
}

// ---------------------------------------------------------------------------------------------
// Bring-up test pattern

#[test]
fn test_pattern_marks_border_corner_and_colour_bars_at_every_size() {
    for (w, h) in [(240, 240), (320, 240), (480, 320), (800, 480)] {
        let mut panel = kneescreen::hw::VirtualPanel::new(w, h, None);
        kneescreen::hw::draw_test_pattern(&mut panel).unwrap();
        let img = panel.to_rgb_image();
        let at = |x: u32, y: u32| img.get_pixel(x, y).0;
        for (x, y) in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)] {
            assert_eq!(at(x, y), [255, 255, 255], "{w}×{h}: border at ({x}, {y})");
        }
        assert_eq!(at(w / 2, h / 10), [0, 0, 0], "{w}×{h}: background");
        let bar = |i: u32| at(w / 2, h / 5 * i + h / 10);
        assert_eq!(bar(1), [255, 0, 0], "{w}×{h}: red bar");
        assert_eq!(bar(2), [0, 255, 0], "{w}×{h}: green bar");
        assert_eq!(bar(3), [0, 0, 255], "{w}×{h}: blue bar");
        let text = (3..51).any(|x| (3..13).any(|y| at(x, y) == [255, 255, 255]));
        assert!(text, "{w}×{h}: TOP LEFT label");
    }
}

// ---------------------------------------------------------------------------------------------
// Config and the panel chosen from it

#[test]
fn panel_config_defaults_to_a_320x240_virtual_panel_and_rejects_unknown_keys() {
    let cfg: PanelConfig = toml::from_str("").unwrap();
    assert_eq!(cfg.kind, PanelKind::Virtual);
    assert_eq!((cfg.width, cfg.height), (320, 240));
    assert_eq!(cfg.spi.model, SpiModel::Ili9341);
    assert!(toml::from_str::<PanelConfig>("widht = 10").is_err());
    let e = toml::from_str::<PanelConfig>("[spi]\ncolor_order = \"bgr\"").unwrap_err();
    assert!(e.to_string().contains("color_order"), "{e}");
}

#[test]
fn every_board_example_config_has_a_valid_panel_and_button_section() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/board");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let panel: PanelConfig = table["panel"]
            .clone()
            .try_into()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panel.kind == PanelKind::Spi {
            // The geometry must fit the controller: initialise it against the fake bus.
            rig(&panel.spi, panel.width, panel.height, true)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let button = table["button"].as_table().unwrap();
        for key in button.keys() {
            assert!(
                ["line", "long_press_ms", "debounce_ms"].contains(&key.as_str()),
                "{}: unknown button key {key}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 5, "one example per supported panel, found {seen}");
}

#[test]
fn open_panel_gives_a_virtual_panel_that_mirrors_to_png() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("panel.png");
    let mut panel = open_panel(&PanelConfig::default(), Some(mirror.clone())).unwrap();
    assert!(matches!(panel, AnyPanel::Virtual(_)));
    assert_eq!(panel.size(), Size::new(320, 240));
    panel.clear(Rgb565::RED).unwrap();
    panel.flush().unwrap();
    assert!(std::fs::read(&mirror).unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn open_panel_errors_tell_the_technician_what_to_check() {
    let spi = PanelConfig {
        kind: PanelKind::Spi,
        spi: SpiPanelConfig {
            device: "/nonexistent/spidev0.0".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = open_panel(&spi, None).err().expect("no such spidev");
    assert!(e.to_string().contains("dtparam=spi=on"), "{e}");

    let fb = PanelConfig {
        kind: PanelKind::Fb,
        fb_device: "/nonexistent/fb0".into(),
        ..Default::default()
    };
    let e = open_panel(&fb, None).err().expect("no such framebuffer");
    assert!(e.to_string().contains("video"), "{e}");

    // A file that is not a device: the real open paths reach their ioctls and fail cleanly.
    let not_a_device = tempfile::NamedTempFile::new().unwrap();
    let spi = PanelConfig {
        kind: PanelKind::Spi,
        spi: SpiPanelConfig {
            device: not_a_device.path().into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = open_panel(&spi, None).err().expect("not a spidev");
    assert!(e.to_string().contains("panel.spi.speed_hz"), "{e}");
    let fb = PanelConfig {
        kind: PanelKind::Fb,
        fb_device: not_a_device.path().into(),
        ..Default::default()
    };
    let e = open_panel(&fb, None).err().expect("not a framebuffer");
    assert!(e.to_string().contains("really a framebuffer"), "{e}");

    let tiny = PanelConfig {
        width: 0,
        ..Default::default()
    };
    assert!(matches!(
        open_panel(&tiny, None),
        Err(PanelError::Size(0, 240))
    ));
}
