//! Extract files: one ZIP holding one BOM-prefixed CSV, built once into a temp cache and
//! streamed from disk.
//!
//! A ZIP is built the first time anyone needs it (a listing needs its `DownloadSize`, a
//! download needs its bytes); concurrent callers wait for the same build. Files are written
//! to a temporary name and renamed when complete, so a half-built ZIP is never served.
//! The cache directory is deleted when the server stops.
//!
//! CSV dialect (bds.md §7; the uncertain parts are our choices): UTF-8 with BOM, header row
//! of PascalCase names, comma separated, `"` quoting with `""` escaping, fields quoted only
//! when needed (comma, quote, CR or LF inside) or when they are the empty string, NULL as an
//! empty unquoted field, CRLF line ends (embedded newlines stay as they are, inside quotes).

use super::catalog::DataSetDef;
use super::rows::{Evolution, KeyState, Row, RowStyle, build_row, column_names};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Everything needed to build one extract file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtractSpec {
    pub def: &'static DataSetDef,
    pub evolution: Evolution,
    pub full: bool,
    pub generation: u32,
    pub style: RowStyle,
}

impl ExtractSpec {
    /// The rows of this extract, in key order: every present row (full) or the rows
    /// inserted/updated/soft-deleted at this generation (differential).
    pub fn rows(self) -> impl Iterator<Item = Row> {
        let ExtractSpec {
            def,
            evolution: e,
            full,
            generation: g,
            style,
        } = self;
        (0..e.key_count(g)).filter_map(move |k| {
            let state = if full {
                Some(e.state(k, g)).filter(|s| *s != KeyState::Absent)
            } else {
                e.diff_state(k, g)
            };
            state.map(|s| build_row(def, e.salt, k, s, style))
        })
    }

    /// Name of the CSV inside the ZIP (not documented by D2L; clients must not depend on it).
    pub fn csv_name(&self) -> String {
        let kind = if self.full { "Full" } else { "Differential" };
        format!(
            "{}_{kind}_{:04}.csv",
            self.def.name.replace(' ', ""),
            self.generation
        )
    }

    fn file_name(&self) -> String {
        self.csv_name().replace(".csv", ".zip")
    }
}

/// Appends one CSV field.
pub(crate) fn push_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(v) = value else { return };
    if v.is_empty() || v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        out.extend_from_slice(v.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(v.as_bytes());
    }
}

/// Appends one CSV record with its CRLF.
pub(crate) fn push_record<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_field(out, f);
    }
    out.extend_from_slice(b"\r\n");
}

/// A built extract file.
#[derive(Debug)]
pub(crate) struct Built {
    pub path: PathBuf,
    pub size: u64,
}

type Slot = Arc<OnceCell<Arc<Built>>>;

/// The on-disk cache of built extract files.
#[derive(Debug)]
pub(crate) struct ZipCache {
    dir: tempfile::TempDir,
    slots: Mutex<HashMap<(usize, bool, u32), Slot>>,
}

impl ZipCache {
    pub fn new() -> std::io::Result<Self> {
        Ok(ZipCache {
            dir: tempfile::Builder::new().prefix("sandbox-bds-").tempdir()?,
            slots: Mutex::default(),
        })
    }

    /// The built file of `spec`, building it first if needed.
    pub async fn get(&self, dataset: usize, spec: ExtractSpec) -> std::io::Result<Arc<Built>> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((dataset, spec.full, spec.generation))
                .or_default()
                .clone()
        };
        let dir = self.dir.path().to_owned();
        slot.get_or_try_init(|| async move {
            let built = tokio::task::spawn_blocking(move || build(&dir, spec))
                .await
                .map_err(|e| std::io::Error::other(format!("extract build task failed: {e}")))??;
            Ok(Arc::new(built))
        })
        .await
        .cloned()
    }
}

fn build(dir: &Path, spec: ExtractSpec) -> std::io::Result<Built> {
    // Fast deflate for big extracts: build time matters more than a few percent of size.
    let big = spec.evolution.key_count(spec.generation) > 100_000;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(if big { Some(1) } else { None })
        .large_file(spec.evolution.key_count(spec.generation) > 5_000_000);
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut zip = zip::ZipWriter::new(tmp.reopen()?);
    zip.start_file(spec.csv_name(), options)
        .map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(128 * 1024);
    buf.extend_from_slice("\u{feff}".as_bytes());
    push_record(
        &mut buf,
        column_names(spec.def, spec.style).into_iter().map(Some),
    );
    for row in spec.rows() {
        push_record(&mut buf, row.iter().map(|v| v.as_deref()));
        if buf.len() >= 64 * 1024 {
            zip.write_all(&buf)?;
            buf.clear();
        }
    }
    zip.write_all(&buf)?;
    zip.finish().map_err(std::io::Error::other)?.sync_all()?;
    let path = dir.join(spec.file_name());
    tmp.persist(&path).map_err(|e| e.error)?;
    let size = std::fs::metadata(&path)?.len();
    Ok(Built { path, size })
}

#[cfg(test)]
mod tests {
    use super::super::catalog::{DATA_SETS, DeleteStyle};
    use super::*;
    use std::io::Read;

    fn spec(full: bool, generation: u32) -> ExtractSpec {
        ExtractSpec {
            def: &DATA_SETS[0],
            evolution: Evolution {
                base_rows: 50,
                inserts_per_gen: 3,
                updates_per_mille: 100,
                deletes_per_mille: 20,
                style: DeleteStyle::Hard,
                salt: 3,
            },
            full,
            generation,
            style: RowStyle::default(),
        }
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        push_record(
            &mut out,
            [
                Some("a"),
                None,
                Some(""),
                Some("x,y"),
                Some("say \"hi\""),
                Some("l1\nl2"),
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a,,\"\",\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\"\r\n"
        );
    }

    #[tokio::test]
    async fn zip_holds_one_bom_csv_with_header_and_rows() {
        let cache = ZipCache::new().expect("cache");
        let built = cache.get(0, spec(true, 2)).await.expect("build");
        let again = cache.get(0, spec(true, 2)).await.expect("cached");
        assert!(Arc::ptr_eq(&built, &again));
        let mut archive =
            zip::ZipArchive::new(std::fs::File::open(&built.path).expect("open")).expect("zip");
        assert_eq!(archive.len(), 1);
        let mut text = String::new();
        archive
            .by_index(0)
            .expect("entry")
            .read_to_string(&mut text)
            .expect("utf8");
        assert!(text.starts_with(
            "\u{feff}OrgUnitId,UserId,RoleName,EnrollmentDate,EnrollmentType,RoleId\r\n"
        ));
        let expected = spec(true, 2).rows().count();
        assert!(expected > 40);
        // Every record ends in "RoleId\r\n" (a number), so count those line ends.
        let records = text.split("\r\n").filter(|l| !l.is_empty()).count() - 1;
        assert!(records >= expected, "{records} < {expected}");
        assert_eq!(
            std::fs::metadata(&built.path).expect("meta").len(),
            built.size
        );
    }

    #[test]
    fn differentials_hold_only_changes() {
        let diff = spec(false, 2).rows().count();
        let full = spec(true, 2).rows().count();
        assert!(diff >= 3 && diff < full / 2, "diff {diff} full {full}");
    }
}
