//! DAP record decoder, CSV: any bytes decode to records or a typed
//! `DecodeError`, never a panic (first byte: bit 0 = typed with a schema).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulkdata_fuzz::decode_dap_records(data, dap_client::Format::Csv);
});
