//! Linux framebuffer panels (/dev/fbN: HDMI, DSI, kernel-driven SPI panels): the pixel layout
//! comes from the screeninfo ioctls; changed rows are packed into it and written with pwrite.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::{Rgb565, Rgb888, RgbColor};

use super::frame::{BufferedPanel, Frame, FrameSink};

/// `struct fb_bitfield` (linux/fb.h): where one colour channel sits in a pixel.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FbBitfield {
    pub offset: u32,
    pub length: u32,
    pub msb_right: u32,
}

/// `struct fb_var_screeninfo` (linux/fb.h), as FBIOGET_VSCREENINFO fills it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FbVarScreeninfo {
    pub xres: u32,
    pub yres: u32,
    pub xres_virtual: u32,
    pub yres_virtual: u32,
    pub xoffset: u32,
    pub yoffset: u32,
    pub bits_per_pixel: u32,
    pub grayscale: u32,
    pub red: FbBitfield,
    pub green: FbBitfield,
    pub blue: FbBitfield,
    pub transp: FbBitfield,
    pub nonstd: u32,
    pub activate: u32,
    pub height: u32,
    pub width: u32,
    pub accel_flags: u32,
    pub pixclock: u32,
    pub left_margin: u32,
    pub right_margin: u32,
    pub upper_margin: u32,
    pub lower_margin: u32,
    pub hsync_len: u32,
    pub vsync_len: u32,
    pub sync: u32,
    pub vmode: u32,
    pub rotate: u32,
    pub colorspace: u32,
    pub reserved: [u32; 4],
}

/// `struct fb_fix_screeninfo` (linux/fb.h), as FBIOGET_FSCREENINFO fills it. The two
/// `unsigned long` fields make it 80 bytes on 64-bit and 68 on 32-bit ARM.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FbFixScreeninfo {
    pub id: [u8; 16],
    pub smem_start: libc::c_ulong,
    pub smem_len: u32,
    pub type_: u32,
    pub type_aux: u32,
    pub visual: u32,
    pub xpanstep: u16,
    pub ypanstep: u16,
    pub ywrapstep: u16,
    pub line_length: u32,
    pub mmio_start: libc::c_ulong,
    pub mmio_len: u32,
    pub accel: u32,
    pub capabilities: u16,
    pub reserved: [u16; 2],
}

// linux/fb.h
const FBIOGET_VSCREENINFO: u32 = 0x4600;
const FBIOGET_FSCREENINFO: u32 = 0x4602;
const FB_TYPE_PACKED_PIXELS: u32 = 0;
const FB_VISUAL_TRUECOLOR: u32 = 2;

/// Why the framebuffer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FbError {
    #[error(
        "cannot open framebuffer {path}: {source}; check panel.fb_device (`ls /dev/fb*`), that \
         the display is connected or its overlay loaded (config.txt), and that the service user \
         is in the `video` group"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} did not answer the framebuffer screeninfo query ({source}): is panel.fb_device really a framebuffer?")]
    Query {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} uses an unsupported pixel format ({detail}); kneescreen draws 16- or 32-bit \
         true colour: set framebuffer_depth=32 (or 16) in config.txt, or run `fbset -depth 32`"
    )]
    Format { path: PathBuf, detail: String },
    #[error(
        "{path} reports {memory} bytes of video memory, less than its {width}×{height} screen \
         needs with {line_length}-byte lines: the display driver's screeninfo is inconsistent"
    )]
    TooSmall {
        path: PathBuf,
        memory: u64,
        width: u32,
        height: u32,
        line_length: u32,
    },
    #[error("writing to framebuffer {path} failed: {source}; was the display unplugged?")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The pixel layout of a framebuffer: what `pack_row` needs to turn Rgb565 into its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbLayout {
    /// Visible size.
    pub width: u32,
    pub height: u32,
    /// 16, 24 or 32.
    pub bits_per_pixel: u32,
    /// Bytes from one row to the next (the stride; may exceed width × bytes per pixel).
    pub line_length: u32,
    pub red: FbBitfield,
    pub green: FbBitfield,
    pub blue: FbBitfield,
    /// Alpha/padding channel; written fully opaque when present.
    pub transp: FbBitfield,
    /// Where the visible area starts in video memory (panning).
    pub xoffset: u32,
    pub yoffset: u32,
}

impl FbLayout {
    /// The layout described by the kernel's screeninfo, checked to be one we can draw
    /// (`memory` is the video memory size, `fix.smem_len` or the file's length).
    pub fn from_screeninfo(
        path: &Path,
        var: &FbVarScreeninfo,
        fix: &FbFixScreeninfo,
        memory: u64,
    ) -> Result<FbLayout, FbError> {
        let layout = FbLayout {
            width: var.xres,
            height: var.yres,
            bits_per_pixel: var.bits_per_pixel,
            line_length: fix.line_length,
            red: var.red,
            green: var.green,
            blue: var.blue,
            transp: var.transp,
            xoffset: var.xoffset,
            yoffset: var.yoffset,
        };
        let format = |detail: String| FbError::Format {
            path: path.to_path_buf(),
            detail,
        };
        if fix.type_ != FB_TYPE_PACKED_PIXELS || fix.visual != FB_VISUAL_TRUECOLOR {
            return Err(format(format!(
                "type {} visual {}, not packed true colour",
                fix.type_, fix.visual
            )));
        }
        if var.grayscale != 0 || var.nonstd != 0 {
            return Err(format("grayscale or non-standard pixels".into()));
        }
        if !matches!(var.bits_per_pixel, 16 | 24 | 32) {
            return Err(format(format!("{} bits per pixel", var.bits_per_pixel)));
        }
        let fits = |c: &FbBitfield| c.offset + c.length <= var.bits_per_pixel;
        for (name, c) in [
            ("red", &var.red),
            ("green", &var.green),
            ("blue", &var.blue),
        ] {
            if c.length == 0 || c.length > 8 || c.msb_right != 0 || !fits(c) {
                return Err(format(format!(
                    "{name} channel of {} bits at bit {}",
                    c.length, c.offset
                )));
            }
        }
        if var.transp.length > 8 || !fits(&var.transp) {
            return Err(format(format!(
                "alpha channel of {} bits",
                var.transp.length
            )));
        }
        let bpp = u64::from(var.bits_per_pixel / 8);
        let needed = u64::from(layout.yoffset + layout.height).saturating_sub(1)
            * u64::from(layout.line_length)
            + u64::from(layout.xoffset + layout.width) * bpp;
        if layout.width == 0
            || layout.height == 0
            || u64::from(layout.line_length) < u64::from(layout.xoffset + layout.width) * bpp
            || needed > memory
        {
            return Err(FbError::TooSmall {
                path: path.to_path_buf(),
                memory,
                width: layout.width,
                height: layout.height,
                line_length: layout.line_length,
            });
        }
        Ok(layout)
    }

    pub fn bytes_per_pixel(&self) -> usize {
        self.bits_per_pixel as usize / 8
    }

    /// One pixel as the framebuffer stores it: each channel scaled to its bit length and shifted
    /// to its offset, any alpha opaque.
    pub fn pack(&self, colour: Rgb565) -> u32 {
        let c = Rgb888::from(colour);
        let place = |value: u8, field: &FbBitfield| {
            (u32::from(value) >> (8 - field.length)) << field.offset
        };
        let alpha = ((1u32 << self.transp.length) - 1) << self.transp.offset;
        place(c.r(), &self.red) | place(c.g(), &self.green) | place(c.b(), &self.blue) | alpha
    }

    /// Packs one row of pixels into `out` (`pixels.len()` × bytes per pixel). Pixel values are
    /// stored in CPU byte order, little-endian on every Pi.
    pub fn pack_row(&self, pixels: &[Rgb565], out: &mut [u8]) {
        let n = self.bytes_per_pixel();
        for (&pixel, dst) in pixels.iter().zip(out.chunks_exact_mut(n)) {
            dst.copy_from_slice(&self.pack(pixel).to_le_bytes()[..n]);
        }
    }

    /// Byte offset of visible pixel (0, `row`) in video memory.
    fn row_offset(&self, row: u32) -> u64 {
        u64::from(self.yoffset + row) * u64::from(self.line_length)
            + u64::from(self.xoffset) * self.bytes_per_pixel() as u64
    }
}

/// Where an `FbPanel` writes its rows.
pub struct FbSink {
    file: File,
    path: PathBuf,
    layout: FbLayout,
    row: Vec<u8>,
}

impl FbSink {
    pub fn layout(&self) -> &FbLayout {
        &self.layout
    }
}

impl FrameSink for FbSink {
    type Error = FbError;

    /// One pwrite per row: the bytes between rows (stride padding, panned-away pixels) are left
    /// as they are.
    fn send(&mut self, frame: &Frame, rows: Range<u32>) -> Result<(), FbError> {
        for y in rows {
            self.layout
                .pack_row(frame.rows(y..y + 1), &mut self.row[..]);
            self.file
                .write_all_at(&self.row, self.layout.row_offset(y))
                .map_err(|source| FbError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// A framebuffer display: draw off-screen, `flush` writes the changed rows.
pub type FbPanel = BufferedPanel<FbSink>;

impl BufferedPanel<FbSink> {
    /// Opens `/dev/fbN`, reads its layout and checks it can be drawn; the panel takes the
    /// framebuffer's visible size.
    pub fn open(path: &Path) -> Result<FbPanel, FbError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| FbError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let (var, fix) = query(&file).map_err(|source| FbError::Query {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file(file, path, &var, &fix, u64::from(fix.smem_len))
    }

    /// A panel writing into `file` laid out as `var`/`fix` say, with `memory` bytes of video
    /// memory (tests pass a temporary file and hand-made screeninfo).
    pub fn from_file(
        file: File,
        path: &Path,
        var: &FbVarScreeninfo,
        fix: &FbFixScreeninfo,
        memory: u64,
    ) -> Result<FbPanel, FbError> {
        let layout = FbLayout::from_screeninfo(path, var, fix, memory)?;
        let sink = FbSink {
            file,
            path: path.to_path_buf(),
            layout,
            row: vec![0; layout.width as usize * layout.bytes_per_pixel()],
        };
        Ok(BufferedPanel::with_sink(layout.width, layout.height, sink))
    }
}

/// Reads both screeninfo structures of an open framebuffer device.
fn query(file: &File) -> std::io::Result<(FbVarScreeninfo, FbFixScreeninfo)> {
    let mut var = FbVarScreeninfo::default();
    let mut fix = FbFixScreeninfo::default();
    let fd = file.as_raw_fd();
    // SAFETY: each request writes exactly one struct of the type passed, which is laid out as in
    // linux/fb.h (#[repr(C)], `unsigned long` as c_ulong), through a pointer valid for it.
    if unsafe {
        libc::ioctl(
            fd,
            FBIOGET_VSCREENINFO as _,
            &mut var as *mut FbVarScreeninfo,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe {
        libc::ioctl(
            fd,
            FBIOGET_FSCREENINFO as _,
            &mut fix as *mut FbFixScreeninfo,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok((var, fix))
}
