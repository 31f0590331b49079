//! BDS CSV reader: any bytes read as rows or a typed `BdsError`, within the
//! record cap (1 MiB here), never a panic.
#![no_main]

use bds_client::{ArchiveLimits, CsvRows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ArchiveLimits::default().max_record_bytes(1 << 20);
    let Ok(rows) = CsvRows::from_reader(data, "fuzz.csv", limits) else {
        return;
    };
    let header = rows.header().clone();
    let _ = header.names().len();
    for row in rows.take(10_000) {
        match row {
            Ok(row) => {
                for i in 0..row.len() + 1 {
                    let _ = (row.get(i), row.value(i));
                }
            }
            Err(e) => {
                let _ = format!("{e} {e:?}");
                break;
            }
        }
    }
});
