//! Reading inputs safely and writing results: inputs are only ever read (with a size limit, never
//! modified); result files are written to a temporary name and renamed into place.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::analysis::{Analysis, Record};

/// Why an input file could not be read. The file itself is left as it is.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("it is a directory, not an image file")]
    Directory,
    #[error("it is not a regular file (a pipe or a device), not an image file")]
    NotAFile,
    #[error("the file does not exist (removed, or the USB stick was pulled?)")]
    Missing,
    #[error("permission denied: the appliance may not read this file")]
    PermissionDenied,
    #[error("the file is {}, more than the limit of {} for one image (max_file_mb in the configuration)", crate::decode::megabytes(*size), crate::decode::megabytes(*limit))]
    TooLarge { size: u64, limit: u64 },
    #[error("the file could not be read: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for InputError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => InputError::Missing,
            std::io::ErrorKind::PermissionDenied => InputError::PermissionDenied,
            _ => InputError::Io(e),
        }
    }
}

/// Reads a whole input file, refusing directories, pipes, devices and anything over `limit` bytes
/// before reading.
pub fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that opening a pipe returns at once; the checks are on what was opened.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(InputError::Directory);
    }
    if !meta.is_file() {
        return Err(InputError::NotAFile);
    }
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while we read it: never read past the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn png_bytes<P: image::PixelWithColorType, C: std::ops::Deref<Target = [P::Subpixel]>>(
    img: &image::ImageBuffer<P, C>,
) -> std::io::Result<Vec<u8>>
where
    P::Subpixel: image::Primitive,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(std::io::Error::other)?;
    Ok(out.into_inner())
}

/// Encodes an image as PNG and writes it atomically.
pub fn write_png<P: image::PixelWithColorType, C: std::ops::Deref<Target = [P::Subpixel]>>(
    path: &Path,
    img: &image::ImageBuffer<P, C>,
) -> std::io::Result<()>
where
    P::Subpixel: image::Primitive,
    [P::Subpixel]: image::EncodableLayout,
{
    write_atomic(path, &png_bytes(img)?)
}

/// Writes `<stem>.overlay.png` and `<stem>.input.png` (when the image could be read), then
/// `<stem>.json` last, so a record never points at pictures that are not there yet.
pub fn write_analysis(dir: &Path, stem: &str, analysis: &Analysis) -> std::io::Result<PathBuf> {
    if let Some(img) = &analysis.overlay {
        write_png(&dir.join(format!("{stem}.overlay.png")), img)?;
    }
    if let Some(img) = &analysis.network_input {
        write_png(&dir.join(format!("{stem}.input.png")), img)?;
    }
    write_record(dir, stem, &analysis.record)
}

/// Writes `<stem>.json` for a record.
pub fn write_record(dir: &Path, stem: &str, record: &Record) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{stem}.json"));
    let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_atomic(&path, &text)?;
    Ok(path)
}
