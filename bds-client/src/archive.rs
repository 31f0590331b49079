//! Opening a downloaded extract ZIP safely.
//!
//! An extract is a ZIP holding one CSV. The archive comes from the network, so
//! it is treated as hostile: entries whose names are absolute or climb out
//! with `..` are refused, and decompression is capped by declared size,
//! declared compression ratio *and* by the bytes actually produced (headers
//! can lie), so a zip bomb is an error instead of a full disk or an OOM.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use crate::error::{BdsError, Result};
use crate::rows::CsvRows;

/// Caps applied while reading an extract archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveLimits {
    /// Most bytes the CSV may decompress to (default 64 GiB).
    pub max_uncompressed_bytes: u64,
    /// Highest declared uncompressed/compressed ratio accepted for entries
    /// over 1 MiB (default 1000; CSV rarely exceeds 50).
    pub max_compression_ratio: u64,
    /// Longest single CSV record in bytes (default 16 MiB); bounds memory.
    pub max_record_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_uncompressed_bytes: 64 << 30,
            max_compression_ratio: 1000,
            max_record_bytes: 16 << 20,
        }
    }
}

impl ArchiveLimits {
    /// Sets [`ArchiveLimits::max_uncompressed_bytes`].
    pub fn max_uncompressed_bytes(mut self, bytes: u64) -> Self {
        self.max_uncompressed_bytes = bytes;
        self
    }

    /// Sets [`ArchiveLimits::max_compression_ratio`].
    pub fn max_compression_ratio(mut self, ratio: u64) -> Self {
        self.max_compression_ratio = ratio;
        self
    }

    /// Sets [`ArchiveLimits::max_record_bytes`].
    pub fn max_record_bytes(mut self, bytes: u64) -> Self {
        self.max_record_bytes = bytes;
        self
    }
}

/// Entries smaller than this are not judged by their compression ratio: a
/// tiny, repetitive CSV compresses well and is harmless.
const RATIO_CHECK_FLOOR: u64 = 1 << 20;

/// An extract ZIP, validated, with its CSV entry chosen.
///
/// ```no_run
/// use bds_client::{ArchiveLimits, ExtractArchive};
///
/// # fn main() -> Result<(), bds_client::BdsError> {
/// let mut archive = ExtractArchive::open("Users.zip", ArchiveLimits::default())?;
/// let mut rows = archive.rows()?;
/// let user_id = rows.header().require("UserId")?;
/// for row in &mut rows {
///     let row = row?;
///     println!("{:?}", row.value(user_id));
/// }
/// # Ok(()) }
/// ```
pub struct ExtractArchive {
    path: PathBuf,
    zip: ZipArchive<File>,
    index: usize,
    entry_name: String,
    declared_size: u64,
    limits: ArchiveLimits,
}

impl ExtractArchive {
    /// Opens `path`, refuses unsafe entry names and suspicious sizes, and
    /// picks the CSV entry (the only file, or the only `.csv` file).
    pub fn open(path: impl AsRef<Path>, limits: ArchiveLimits) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)
            .map_err(|e| BdsError::io(format!("cannot open {}", path.display()), e))?;
        let zip = ZipArchive::new(file).map_err(|e| archive_error(&path, e))?;
        let index = choose_csv_entry(&path, &zip)?;
        let entry = zip
            .by_index_data(index)
            .map_err(|e| archive_error(&path, e))?;
        let entry_name = entry
            .name()
            .map_err(|e| archive_error(&path, e))?
            .into_owned();
        if entry.encrypted() {
            return Err(BdsError::Archive {
                path,
                message: format!("{entry_name} is encrypted"),
            });
        }
        let declared_size = entry.size();
        check_declared_size(&entry_name, declared_size, entry.compressed_size(), &limits)?;
        Ok(ExtractArchive {
            path,
            zip,
            index,
            entry_name,
            declared_size,
            limits,
        })
    }

    /// Name of the CSV entry inside the archive.
    pub fn entry_name(&self) -> &str {
        &self.entry_name
    }

    /// The CSV's uncompressed size as declared by the archive.
    pub fn declared_size(&self) -> u64 {
        self.declared_size
    }

    /// Path of the archive.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the CSV as rows, mapped by header name. Blocking: call it from
    /// `spawn_blocking` in async code, or use [`crate::rows::read_batches`].
    pub fn rows(&mut self) -> Result<CsvRows<'_>> {
        let (entry_name, path, limits) = (self.entry_name.clone(), self.path.clone(), self.limits);
        let reader = self.open_guarded()?;
        CsvRows::new(reader, entry_name, path, limits)
    }

    /// Decompresses the CSV into `dir` (created if missing) under its entry
    /// name, through a temporary file renamed when complete. Returns its path.
    pub fn unpack_to(&mut self, dir: impl AsRef<Path>) -> Result<PathBuf> {
        let dir = dir.as_ref();
        let relative = self
            .zip
            .by_index_data(self.index)
            .ok()
            .and_then(|e| e.enclosed_name())
            .ok_or_else(|| BdsError::UnsafeEntryName {
                path: self.path.clone(),
                name: self.entry_name.clone(),
            })?;
        let target = dir.join(relative);
        let parent = target.parent().unwrap_or(dir).to_path_buf();
        std::fs::create_dir_all(&parent)
            .map_err(|e| BdsError::io(format!("cannot create {}", parent.display()), e))?;
        let mut temp = tempfile::NamedTempFile::new_in(&parent).map_err(|e| {
            BdsError::io(
                format!("cannot create a temporary file in {}", parent.display()),
                e,
            )
        })?;
        let (path, entry) = (self.path.clone(), self.entry_name.clone());
        let mut reader = self.open_guarded()?;
        io::copy(&mut reader, temp.as_file_mut()).map_err(|e| read_error(&path, &entry, e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| BdsError::io(format!("cannot flush {}", target.display()), e))?;
        temp.persist(&target)
            .map_err(|e| BdsError::io(format!("cannot write {}", target.display()), e.error))?;
        Ok(target)
    }

    fn open_guarded(&mut self) -> Result<GuardedReader<Box<dyn Read + Send + '_>>> {
        let path = &self.path;
        let file = self
            .zip
            .by_index(self.index)
            .map_err(|e| archive_error(path, e))?;
        GuardedReader::new(Box::new(file) as Box<dyn Read + Send + '_>, self.limits)
            .map_err(|e| read_error(path, &self.entry_name, e))
    }
}

impl std::fmt::Debug for ExtractArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractArchive")
            .field("path", &self.path)
            .field("entry_name", &self.entry_name)
            .field("declared_size", &self.declared_size)
            .finish_non_exhaustive()
    }
}

fn archive_error(path: &Path, e: zip::result::ZipError) -> BdsError {
    BdsError::Archive {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Maps an I/O error met while decompressing to the limit that tripped, or
/// to a corrupt-archive error.
pub(crate) fn read_error(path: &Path, entry: &str, e: io::Error) -> BdsError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Tripped>())
    {
        Some(Tripped::Uncompressed { limit }) => BdsError::DecompressionLimit {
            entry: entry.to_string(),
            limit: *limit,
            detail: "more bytes than declared were produced".to_string(),
        },
        None => BdsError::Archive {
            path: path.to_path_buf(),
            message: format!("{entry} is corrupt: {e}"),
        },
    }
}

fn choose_csv_entry(path: &Path, zip: &ZipArchive<File>) -> Result<usize> {
    let mut files = Vec::new();
    for index in 0..zip.len() {
        let entry = zip
            .by_index_data(index)
            .map_err(|e| archive_error(path, e))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if !is_safe_entry_name(&name) || entry.enclosed_name().is_none() {
            return Err(BdsError::UnsafeEntryName {
                path: path.to_path_buf(),
                name,
            });
        }
        if !entry.is_dir() {
            files.push((index, name));
        }
    }
    let csvs: Vec<_> = files
        .iter()
        .filter(|(_, n)| n.to_ascii_lowercase().ends_with(".csv"))
        .collect();
    match (files.as_slice(), csvs.as_slice()) {
        ([(index, _)], _) => Ok(*index),
        (_, [(index, _)]) => Ok(*index),
        _ => Err(BdsError::UnexpectedEntries {
            path: path.to_path_buf(),
            entries: files.into_iter().map(|(_, n)| n).collect(),
        }),
    }
}

/// A relative name that stays inside the directory it is unpacked into: not
/// absolute (`/x`, `\\x`, `C:x`), no `..` component, no NUL.
fn is_safe_entry_name(name: &str) -> bool {
    let absolute = name.starts_with(['/', '\\'])
        || name
            .split(['/', '\\'])
            .next()
            .is_some_and(|c| c.contains(':'));
    !absolute && !name.contains('\0') && !name.split(['/', '\\']).any(|c| c == "..")
}

fn check_declared_size(
    entry: &str,
    size: u64,
    compressed: u64,
    limits: &ArchiveLimits,
) -> Result<()> {
    if size > limits.max_uncompressed_bytes {
        return Err(BdsError::DecompressionLimit {
            entry: entry.to_string(),
            limit: limits.max_uncompressed_bytes,
            detail: format!("it declares {size} bytes"),
        });
    }
    if size >= RATIO_CHECK_FLOOR {
        let ratio = size / compressed.max(1);
        if ratio > limits.max_compression_ratio {
            return Err(BdsError::CompressionRatio {
                entry: entry.to_string(),
                ratio,
                limit: limits.max_compression_ratio,
            });
        }
    }
    Ok(())
}

/// Which cap a [`GuardedReader`] hit; carried inside an `io::Error`.
#[derive(Debug)]
pub(crate) enum Tripped {
    Uncompressed { limit: u64 },
}

impl std::fmt::Display for Tripped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tripped::Uncompressed { limit } => write!(f, "decompressed data exceeds {limit} bytes"),
        }
    }
}

impl std::error::Error for Tripped {}

/// Strips a UTF-8 BOM and counts bytes, failing once the total exceeds its cap.
pub(crate) struct GuardedReader<R> {
    inner: io::Chain<io::Cursor<Vec<u8>>, R>,
    produced: u64,
    limit: u64,
}

impl<R: Read> GuardedReader<R> {
    pub(crate) fn new(mut inner: R, limits: ArchiveLimits) -> io::Result<Self> {
        let mut head = Vec::with_capacity(3);
        (&mut inner).take(3).read_to_end(&mut head)?;
        if head == b"\xEF\xBB\xBF" {
            head.clear();
        }
        Ok(GuardedReader {
            inner: io::Cursor::new(head).chain(inner),
            produced: 0,
            limit: limits.max_uncompressed_bytes,
        })
    }
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if self.produced > self.limit {
            return Err(io::Error::other(Tripped::Uncompressed {
                limit: self.limit,
            }));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_strips_a_bom_and_caps_the_total() {
        let mut out = String::new();
        let limits = ArchiveLimits::default();
        GuardedReader::new(&b"\xEF\xBB\xBFa,b\n"[..], limits)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "a,b\n");

        let data = vec![b'x'; 1000];
        let mut guard = GuardedReader::new(&data[..], limits.max_uncompressed_bytes(999)).unwrap();
        let err = io::copy(&mut guard, &mut io::sink()).unwrap_err();
        let e = read_error(Path::new("x.zip"), "x.csv", err);
        assert!(
            matches!(e, BdsError::DecompressionLimit { limit: 999, .. }),
            "{e}"
        );
    }

    #[test]
    fn entry_names_that_escape_are_unsafe() {
        for bad in [
            "../x.csv",
            "a/../../x.csv",
            "/etc/x.csv",
            "\\x.csv",
            "C:x.csv",
            "a\\..\\..\\x",
            "a\0b",
        ] {
            assert!(!is_safe_entry_name(bad), "{bad}");
        }
        for good in ["x.csv", "dir/x.csv", "a..b.csv", "./x.csv"] {
            assert!(is_safe_entry_name(good), "{good}");
        }
    }

    #[test]
    fn the_guard_only_drops_a_leading_bom() {
        let mut out = String::new();
        GuardedReader::new(&b"ab"[..], ArchiveLimits::default())
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "ab");
    }
}
