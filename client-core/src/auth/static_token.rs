//! A fixed bearer token.

use std::fmt;

use secrecy::SecretString;

use super::{AccessToken, TokenProvider};
use crate::Result;

/// A bearer token given by the user (for example a personal API token). It
/// never expires as far as the client knows and cannot be refreshed: a `401`
/// is reported as [`Error::Auth`](crate::Error::Auth) at once.
#[derive(Clone)]
pub struct StaticToken {
    token: AccessToken,
}

impl StaticToken {
    /// A provider that always returns `token`.
    pub fn new(token: SecretString) -> Self {
        Self {
            token: AccessToken::new(token, None),
        }
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken([redacted])")
    }
}

#[async_trait::async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<AccessToken> {
        Ok(self.token.clone())
    }

    async fn invalidate(&self, _rejected: &AccessToken) {}

    fn can_refresh(&self) -> bool {
        false
    }
}
