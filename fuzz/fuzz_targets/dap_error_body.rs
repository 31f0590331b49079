//! DAP error-body parser and job model: the first byte picks the HTTP status,
//! the rest is the response body of `GET /dap/job/{id}`. Every error status
//! must become a typed `dap_client::Error` (never a panic, never `Ok`), and
//! its `Display`/`Debug` must render.
#![no_main]

use std::sync::{Arc, OnceLock};

use client_core::retry::{FixedRandom, RetryPolicy};
use client_core::time::RecordingSleeper;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 409, 410, 413, 422, 429, 500, 502, 503, 504,
];

fn client() -> &'static dap_client::Client {
    static CLIENT: OnceLock<dap_client::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let (url, _) = bulkdata_fuzz::loopback_server();
        dap_client::Client::builder()
            .base_url(url)
            .credentials("fuzz", dap_client::SecretString::from("fuzz-secret"))
            .retry_policy(RetryPolicy::no_retries())
            .sleeper(Arc::new(RecordingSleeper::new()))
            .random(Arc::new(FixedRandom::new(0.0)))
            .build()
            .expect("a client")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(pick) % STATUSES.len()];
    let (_, reply) = bulkdata_fuzz::loopback_server();
    *reply.lock().unwrap_or_else(|p| p.into_inner()) = (status, body.to_vec());
    let client = client();
    let result = bulkdata_fuzz::runtime().block_on(client.job("fuzz-job"));
    match result {
        Ok(job) => {
            assert_eq!(status, 200, "an error status was accepted: {job:?}");
            let _ = format!("{job:?} {}", job.is_terminal());
        }
        Err(e) => {
            let _ = format!("{e} {e:?} {:?} {}", e.status(), e.is_fatal());
        }
    }
});
