//! Toucan responses: error bodies (JSON or plain text) and operation-state
//! bodies parse or fail cleanly; unknown states are kept and treated as
//! still running; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toucan_client::{ErrorBody, Operation, OperationState, OperationStatus};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let body = ErrorBody::parse(&text);
    let _ = (body.message(), format!("{body:?}"));
    let state = OperationState::from(text.to_string());
    if matches!(state, OperationState::Unknown(_)) {
        assert!(!state.is_terminal(), "an unknown state is not terminal");
    }
    let _ = (
        state.as_str(),
        state.is_success(),
        Operation::from(text.as_ref()).as_str().len(),
    );
    if let Ok(status) = serde_json::from_slice::<OperationStatus>(data) {
        let _ = (format!("{status:?}"), status.status.is_terminal());
    }
});
