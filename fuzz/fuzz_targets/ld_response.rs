//! LD batch responses: any bytes either deserialise into a `Job` (unknown
//! statuses kept, odd counters dropped) or fail cleanly; the status machine
//! and the download-link scan never panic on what was parsed.
#![no_main]

use ldbatch_client::{Job, JobStatus, StatusMonitor, parse_timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let status = JobStatus::from(text);
        let _ = (status.is_terminal(), status.is_known(), status.as_str());
        for (next, _) in status.next_statuses() {
            let _ = status.transition_to(next);
        }
        let _ = parse_timestamp(text);
    }
    let Ok(job) = serde_json::from_slice::<Job>(data) else {
        return;
    };
    let _ = format!("{job:?}");
    let _ = job.download_links();
    for strict in [false, true] {
        let mut monitor = StatusMonitor::new(job.job_id.clone(), strict);
        let _ = monitor.observe(&JobStatus::Initialized);
        if let Err(e) = monitor.observe(&job.status) {
            let _ = format!("{e} {e:?}");
        }
    }
});
