//! Writing a body to disk so that the destination either holds the whole
//! object or does not exist: temp file in the same directory, fsync,
//! rename, fsync of the directory.

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::body::Body;
use crate::{Error, Result};

/// Write buffer: big enough that a blocking write is not issued per
/// network chunk.
const WRITE_BUFFER: usize = 1 << 20;

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedFile {
    /// Where the file is (the destination given).
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Streams `body` into `dest` atomically. The temporary file is a
/// [`NamedTempFile`], deleted when dropped, so every early return (and a
/// cancelled future) removes it.
pub(crate) async fn save_atomically(mut body: Body, dest: &Path) -> Result<SavedFile> {
    let dir = parent_dir(dest);
    let temp = create_temp(&dir, dest)?;
    let handle = temp
        .as_file()
        .try_clone()
        .map_err(|e| io_error("could not open", temp.path(), e))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(handle));

    let mut bytes: u64 = 0;
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk?;
        out.write_all(&chunk)
            .await
            .map_err(|e| io_error("could not write", temp.path(), e))?;
        bytes += chunk.len() as u64;
    }
    out.flush()
        .await
        .map_err(|e| io_error("could not write", temp.path(), e))?;
    let file = out.into_inner();
    file.sync_all()
        .await
        .map_err(|e| io_error("could not sync", temp.path(), e))?;
    drop(file);

    let dest = dest.to_path_buf();
    let url = body.url().to_string();
    tokio::task::spawn_blocking(move || {
        finish(temp, &dest, &dir).map(|()| SavedFile { path: dest, bytes })
    })
    .await
    .map_err(|e| Error::Download {
        url,
        message: format!("the file-finishing task failed: {e}"),
    })?
}

/// The directory `dest` lives in (`.` for a bare file name).
fn parent_dir(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hidden `.<name>.<random>.part` file next to the destination, so the
/// rename never crosses file systems.
fn create_temp(dir: &Path, dest: &Path) -> Result<NamedTempFile> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| io_error("could not create a temporary file in", dir, e))
}

/// Renames the synced temp file over `dest` and syncs the directory so the
/// rename itself survives a crash.
fn finish(temp: NamedTempFile, dest: &Path, dir: &Path) -> Result<()> {
    temp.persist(dest)
        .map_err(|e| io_error("could not move the download to", dest, e.error))?;
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("could not sync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Windows cannot open a directory to sync it; the rename is left to the
    // file system's journal.
    Ok(())
}

fn io_error(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), source)
}
