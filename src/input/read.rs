//! Reading one file safely: only a regular file, opened without blocking (a FIFO swapped in
//! cannot hang a scan), checked again to be inside the directory once open, and never more than
//! the size limit.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::loader::{Content, Stamp};
use crate::input::parse::ParsedFile;

/// Reads a file, refusing one over `max_size` bytes without reading it all.
pub fn read_limited(path: &Path, max_size: u64) -> Result<Vec<u8>, ReadError> {
    let mut file = fs::File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > max_size {
        return Err(ReadError::TooLarge { len, max_size });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.by_ref()
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_size {
        return Err(ReadError::TooLarge {
            len: bytes.len() as u64,
            max_size,
        });
    }
    Ok(bytes)
}

/// Opens `path` for reading if it is a regular file whose real location is under `root`, as
/// the file actually opened says (a symlink swapped since the listing is caught here).
/// `Ok(None)` when it is not (any more): gone, moved out of reach, or not a regular file; the
/// next listing says why.
pub(super) fn open_inside(
    path: &Path,
    root: &Path,
) -> io::Result<Option<(fs::File, fs::Metadata)>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Linux's O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    const O_NONBLOCK: i32 = 0o4000;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let real = {
        use std::os::fd::AsRawFd;
        fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .or_else(|_| fs::canonicalize(path))?
    };
    Ok(real.starts_with(root).then_some((file, meta)))
}

/// Reads an open file of `len` bytes (as its metadata said when it was opened), refusing one
/// over `max_size` bytes without reading it all.
pub(super) fn read_open(mut file: fs::File, len: u64, max_size: u64) -> Result<Vec<u8>, ReadError> {
    if len > max_size {
        return Err(ReadError::TooLarge { len, max_size });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.by_ref()
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_size {
        return Err(ReadError::TooLarge {
            len: bytes.len() as u64,
            max_size,
        });
    }
    Ok(bytes)
}

/// What a look at one listed file found (`Loader::look`).
pub(super) enum Looked {
    /// Its metadata did not change: the cached state holds.
    Unchanged,
    /// Read now; `parsed` unless the cache holds the parse of these very bytes.
    Read {
        stamp: Stamp,
        racy: bool,
        content: Content,
        parsed: Option<Arc<ParsedFile>>,
    },
    /// Deleted, or no longer a regular file inside the directory, since it was listed.
    Gone,
    Unreadable(String),
}

/// Why one file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(io::Error),
    #[error("the file is {len} bytes, over the limit of {max_size} bytes (--max-file-size)")]
    TooLarge { len: u64, max_size: u64 },
}
