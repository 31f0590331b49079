//! The redirect policy.
//!
//! reqwest already drops `Authorization` (and cookies) when a redirect goes
//! to another host, port or scheme; this policy adds the limit and refuses a
//! redirect that would downgrade to plain HTTP on a non-loopback host.

use reqwest::redirect::{Attempt, Policy};

/// Most redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 10;

pub(crate) fn policy(allow_insecure_http: bool) -> Policy {
    Policy::custom(move |attempt: Attempt<'_>| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let message = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(message);
        }
        if let Err(e) = super::client::check_scheme(attempt.url(), allow_insecure_http) {
            return attempt.error(e.to_string());
        }
        attempt.follow()
    })
}
