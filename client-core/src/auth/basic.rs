//! HTTP Basic credentials.

use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// A user name (or client id) and password (or client secret) for HTTP Basic
/// authentication. `Debug` shows the user name only.
#[derive(Clone)]
pub struct BasicCredentials {
    username: String,
    password: SecretString,
}

impl BasicCredentials {
    /// Credentials for `username` with `password`.
    pub fn new(username: impl Into<String>, password: SecretString) -> Self {
        Self {
            username: username.into(),
            password,
        }
    }

    /// The user name (or client id).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (or client secret).
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// The `Authorization` header value: `Basic base64(user:password)`.
    pub(crate) fn header_value(&self) -> SecretString {
        let raw = format!("{}:{}", self.username, self.password.expose_secret());
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        SecretString::from(format!("Basic {encoded}"))
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_rfc7617_basic() {
        let creds = BasicCredentials::new("Aladdin", SecretString::from("open sesame"));
        assert_eq!(
            creds.header_value().expose_secret(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
