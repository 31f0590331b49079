//! Inputs found by the fuzz targets in `fuzz/` (see docs/fuzzing.md), kept as
//! regression tests. A test is `#[ignore]`d only while the owning crate still
//! has the bug; run them with `cargo test --test fuzz_regressions -- --include-ignored`.

/// Found by `bds_csv` in its first minute: a two-byte UTF-8 character whose
/// bytes are separated by commas (`\xc3` `,` ... `,` `\xa0`). The record's
/// bytes, joined without the separators, form valid UTF-8 (`àAU`), so the
/// whole-record check passes, and slicing the first field at byte 1 then
/// panics ("end byte index 1 is not a char boundary"). Server data must
/// never panic the reader: each field boundary has to be a char boundary,
/// else the field is not valid UTF-8 and `BdsError::Csv` is the answer.
/// As a data row (after a valid header) the row is even accepted, and reading
/// its first cell panics the same way.
#[test]
fn bds_csv_a_character_split_by_commas_is_an_error_not_a_panic() {
    let limits = bds_client::ArchiveLimits::default();
    for input in [
        &b"\xc3,,,\xa0A,U,"[..],
        &b"a,b,c,d,e,f\n\xc3,,,\xa0A,U,\n"[..],
    ] {
        let outcome = match bds_client::CsvRows::from_reader(input, "fuzz.csv", limits) {
            Err(e) => Err(e),
            Ok(rows) => rows.into_iter().try_for_each(|row| {
                let row = row?;
                // Reading the cells is where a data row panics.
                let _cells: Vec<_> = (0..row.len()).map(|i| row.get(i)).collect();
                Ok(())
            }),
        };
        let err = outcome.expect_err("the fields are not valid UTF-8");
        assert!(matches!(err, bds_client::BdsError::Csv { .. }), "{err:?}");
    }
}
