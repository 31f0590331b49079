//! Reading extract ZIPs: CSV dialect, header mapping and hostile archives.

use std::io::Write;

use bds_client::{ArchiveLimits, BdsError, CsvRows, ExtractArchive, read_batches};
use futures::StreamExt;
use zip::write::SimpleFileOptions;

fn zip_with(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
    for (name, data) in entries {
        zip.start_file(*name, SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    file
}

const TRICKY: &str = "\u{feff}UserId,Comments,UserName,IsActive\r\n\
1,\"Hello, \"\"world\"\"\",alice,True\r\n\
2,\"line one\nline two\",Zoë 😀,\r\n\
3,,\"bob\",1\r\n\
4,\"\",carol,\"\"\r\n";

#[test]
fn reads_a_bom_csv_with_quotes_newlines_unicode_and_nulls_by_header_name() {
    let file = zip_with(&[("Users.csv", TRICKY.as_bytes())]);
    let mut archive = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap();
    assert_eq!(archive.entry_name(), "Users.csv");
    let mut rows = archive.rows().unwrap();
    let header = rows.header().clone();
    assert_eq!(
        header.names()[0],
        "UserId",
        "the BOM is not part of the first name"
    );
    // Columns asked in another order than the file's, one absent, one case-shifted.
    let map = header.map_columns(&["username", "UserId", "Comments", "OrgDefinedId", "ISACTIVE"]);
    let projected: Vec<Vec<Option<String>>> = (&mut rows)
        .map(|r| {
            r.unwrap()
                .project(&map)
                .map(|v| v.map(str::to_string))
                .collect()
        })
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        projected,
        vec![
            vec![s("alice"), s("1"), s("Hello, \"world\""), None, s("True")],
            vec![s("Zoë 😀"), s("2"), s("line one\nline two"), None, None],
            vec![s("bob"), s("3"), None, None, s("1")],
            vec![s("carol"), s("4"), s(""), None, s("")],
        ]
    );
}

#[test]
fn a_missing_required_column_names_the_column_and_the_header() {
    let file = zip_with(&[("x.csv", b"A,B\n1,2\n")]);
    let mut archive = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap();
    let rows = archive.rows().unwrap();
    let err = rows.header().require("UserId").unwrap_err();
    assert!(matches!(err, BdsError::MissingColumn { ref column, .. } if column == "UserId"));
    assert!(err.to_string().contains("A,B"), "{err}");
}

#[test]
fn appended_and_short_rows_are_tolerated() {
    let csv = "A,B\n1,2,extra\n3\n";
    let mut rows =
        CsvRows::from_reader(csv.as_bytes(), "inline.csv", ArchiveLimits::default()).unwrap();
    let b = rows.header().require("B").unwrap();
    let values: Vec<_> = (&mut rows)
        .map(|r| r.unwrap().value(b).map(str::to_string))
        .collect();
    assert_eq!(values, vec![Some("2".to_string()), None]);
}

#[test]
fn zip_slip_entries_are_rejected() {
    for name in ["../evil.csv", "/etc/evil.csv", "a/../../evil.csv"] {
        let file = zip_with(&[(name, b"A\n1\n")]);
        let err = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap_err();
        assert!(
            matches!(err, BdsError::UnsafeEntryName { name: ref n, .. } if n == name),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_zip_bomb_is_rejected_by_its_ratio() {
    let zeros = vec![b'0'; 24 << 20];
    let file = zip_with(&[("bomb.csv", &zeros)]);
    let err = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(err, BdsError::CompressionRatio { limit: 1000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("zip bomb"));
}

#[test]
fn an_extract_over_the_size_cap_is_rejected() {
    let data = "A\n".repeat(5000);
    let file = zip_with(&[("big.csv", data.as_bytes())]);
    let limits = ArchiveLimits::default().max_uncompressed_bytes(4096);
    let err = ExtractArchive::open(file.path(), limits).unwrap_err();
    assert!(
        matches!(err, BdsError::DecompressionLimit { limit: 4096, .. }),
        "{err}"
    );
}

#[test]
fn an_oversized_record_is_an_error_not_an_allocation() {
    let mut csv = b"A,B\n1,\"".to_vec();
    csv.extend(std::iter::repeat_n(b'x', 1 << 20));
    csv.extend(b"\"\n");
    let file = zip_with(&[("wide.csv", &csv)]);
    let limits = ArchiveLimits::default()
        .max_record_bytes(1024)
        .max_compression_ratio(u64::MAX);
    let mut archive = ExtractArchive::open(file.path(), limits).unwrap();
    let err = archive.rows().unwrap().next().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            BdsError::RecordTooLarge {
                line: 2,
                limit: 1024,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_csv_is_chosen_among_other_files_but_two_csvs_are_ambiguous() {
    let file = zip_with(&[("readme.txt", b"hi"), ("data/Users.csv", b"A\n1\n")]);
    let archive = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap();
    assert_eq!(archive.entry_name(), "data/Users.csv");

    let file = zip_with(&[("a.csv", b"A\n"), ("b.csv", b"A\n")]);
    let err = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(err, BdsError::UnexpectedEntries { ref entries, .. } if entries.len() == 2),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_zip_is_a_typed_error() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"<html>quota exceeded</html>").unwrap();
    let err = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap_err();
    assert!(matches!(err, BdsError::Archive { .. }), "{err}");
}

#[test]
fn invalid_utf8_and_empty_files_are_csv_errors() {
    let err = CsvRows::from_reader(&b"A\n\xff\xfe\n"[..], "bad.csv", ArchiveLimits::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, BdsError::Csv { line: 2, .. }), "{err}");
    let err = CsvRows::from_reader(&b""[..], "empty.csv", ArchiveLimits::default()).unwrap_err();
    assert!(matches!(err, BdsError::Csv { .. }), "{err}");
}

#[test]
fn unpack_writes_the_csv_inside_the_directory_and_nothing_else() {
    let file = zip_with(&[("sub/Users.csv", TRICKY.as_bytes())]);
    let dir = tempfile::tempdir().unwrap();
    let mut archive = ExtractArchive::open(file.path(), ArchiveLimits::default()).unwrap();
    let path = archive.unpack_to(dir.path()).unwrap();
    assert_eq!(path, dir.path().join("sub").join("Users.csv"));
    // The BOM is dropped; the bytes are otherwise as in the archive.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        TRICKY.trim_start_matches('\u{feff}')
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[tokio::test]
async fn batches_stream_the_rows_with_the_header_first() {
    let mut csv = String::from("Id,Name\n");
    for i in 0..25 {
        csv.push_str(&format!("{i},\"n\n{i}\"\n"));
    }
    let file = zip_with(&[("x.csv", csv.as_bytes())]);
    let batches: Vec<_> = read_batches(file.path(), ArchiveLimits::default(), 10)
        .collect()
        .await;
    let batches: Vec<_> = batches.into_iter().map(Result::unwrap).collect();
    let sizes: Vec<_> = batches.iter().map(|b| b.rows.len()).collect();
    assert_eq!(sizes, vec![0, 10, 10, 5]);
    assert_eq!(batches[0].header.names(), ["Id", "Name"]);
    assert_eq!(batches[3].rows[4].get(1), Some("n\n24"));
}

#[tokio::test]
async fn batches_end_with_the_typed_error() {
    let file = zip_with(&[("../x.csv", b"A\n1\n")]);
    let items: Vec<_> = read_batches(file.path(), ArchiveLimits::default(), 10)
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(BdsError::UnsafeEntryName { .. })));
}
