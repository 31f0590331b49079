//! Classifying transport failures and describing them without the URL.

use std::error::Error as _;

use crate::error::redact_url;
use crate::{Error, TransportKind};

/// What kind of failure a reqwest error is, for the retry decision.
///
/// reqwest's own predicates miss resets and early closes, so the source chain
/// is searched for hyper's "incomplete message"/"closed" and for I/O resets,
/// broken pipes and unexpected EOFs.
pub(crate) fn kind_of(error: &reqwest::Error) -> TransportKind {
    // A connect timeout is both; it never reached the server, so Connect.
    if error.is_connect() {
        return TransportKind::Connect;
    }
    if error.is_timeout() {
        return TransportKind::Timeout;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return TransportKind::Interrupted;
            }
            if h.is_timeout() {
                return TransportKind::Timeout;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return TransportKind::Interrupted;
                }
                K::TimedOut => return TransportKind::Timeout,
                _ => {}
            }
        }
        source = cause.source();
    }
    TransportKind::Other
}

/// The error's description with its causes, never including the URL.
pub(crate) fn describe(error: reqwest::Error, url: &str) -> String {
    let error = error.without_url();
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    // Belt and braces: no cause may echo the URL with its query.
    parts.join(": ").replace(url, &redact_url(url))
}

/// Builds [`Error::Transport`] for a failed request.
pub(crate) fn transport_error(error: reqwest::Error, method: &str, url: &str) -> Error {
    Error::Transport {
        kind: kind_of(&error),
        method: method.to_string(),
        url: redact_url(url),
        message: describe(error, url),
    }
}
