//! BDS extract archive: any bytes, saved as a `.zip`, open as an extract or
//! fail with a typed `BdsError`; rows read within the caps; unpacking never
//! writes outside the target directory (zip-slip) and never panics.
#![no_main]

use bds_client::{ArchiveLimits, ExtractArchive};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scratch = bulkdata_fuzz::scratch_dir();
    let zip = scratch.join("input.zip");
    let out = scratch.join("out");
    std::fs::write(&zip, data).expect("scratch file");
    let limits = ArchiveLimits::default()
        .max_uncompressed_bytes(8 << 20)
        .max_record_bytes(1 << 20);
    let Ok(mut archive) = ExtractArchive::open(&zip, limits) else {
        return;
    };
    let _ = format!("{archive:?} {}", archive.entry_name());
    if let Ok(rows) = archive.rows() {
        for row in rows.take(10_000) {
            if let Err(e) = row {
                let _ = format!("{e} {e:?}");
                break;
            }
        }
    }
    if let Ok(path) = archive.unpack_to(&out) {
        let canonical_out = out.canonicalize().expect("the output directory exists");
        let canonical = path.canonicalize().expect("the unpacked file exists");
        assert!(
            canonical.starts_with(&canonical_out),
            "unpacked outside the target: {}",
            canonical.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
});
