//! Reading an input file: only ever read (never moved or modified), with a size limit checked
//! before reading; directories, pipes and devices are refused without blocking.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::pipeline::decode::limits::megabytes;

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
    #[error("the file is {}, more than the limit of {} for one image (max_file_mb in the configuration)", megabytes(*size), megabytes(*limit))]
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
