//! Writing a file so that a reader (or a power cut) never sees half of it: a temporary file in
//! the same folder, synced, then renamed into place.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the temporary files of writes running at once in this process.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o666)
}

/// As `write_atomic`, for a secret (a private key): the file is readable by its owner only, from
/// the moment it is created.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// `write_atomic` with the permission bits the temporary file is created with (less the umask).
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        // A fresh file, so the mode holds even if a stale temporary file had another.
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// As `write_atomic`, and the folder is synced too, so the new name survives a power cut (for
/// files whose arrival is confirmed to someone else, like a received DICOM instance).
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)?;
    fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
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
