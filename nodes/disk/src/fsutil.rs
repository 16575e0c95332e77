//! Small file-system steps, each mapping its I/O error to `StorageError::Io` with the path.

use ballot_core::StorageError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.display().to_string(), source }
}

pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt { path: path.display().to_string(), detail: detail.into() }
}

/// The file's bytes, or `None` if it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Make the directory's entries (creations, renames) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replace `path` with `bytes` so that a crash at any point leaves either the old file or
/// the new one, whole: write `path.tmp`, sync it, rename it over `path`, sync the dir.
/// Returns the new file, open for reading and writing, positioned at its end.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<File, StorageError> {
    let tmp = tmp_path(path);
    let mut f =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)?;
    Ok(f)
}

/// An exclusive lock on the storage dir, held while the value lives: two processes on one
/// dir would interleave their logs.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(path: &Path) -> Result<DirLock, StorageError> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io_err(path))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a file descriptor we own; it has no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Err(StorageError::Io {
                        path: path.display().to_string(),
                        source: io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "another process holds this storage dir: stop it, or give this node its own dir",
                        ),
                    });
                }
                return Err(io_err(path)(e));
            }
        }
        Ok(DirLock { _file: file })
    }
}
