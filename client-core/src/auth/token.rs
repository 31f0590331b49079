//! The access token and the provider trait.

use std::fmt;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};

use crate::Result;

/// A bearer access token and, when the server said, the instant it expires.
///
/// It deliberately has no `Display`, and its `Debug` prints neither the token
/// nor any part of it.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    expires_at: Option<Instant>,
}

impl AccessToken {
    /// A token that expires at `expires_at` (`None`: unknown, used until the
    /// server rejects it).
    pub fn new(secret: SecretString, expires_at: Option<Instant>) -> Self {
        Self { secret, expires_at }
    }

    /// The token itself. Expose it only to build the `Authorization` header.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether `other` carries the same token string.
    pub fn same_token_as(&self, other: &AccessToken) -> bool {
        self.secret.expose_secret() == other.secret.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Something that hands out bearer tokens: a [`TokenCache`](super::TokenCache)
/// over a grant, a [`StaticToken`](super::StaticToken), or your own.
///
/// Object safe, so clients hold it as `Arc<dyn TokenProvider>`.
///
/// ```
/// use std::sync::Arc;
/// use client_core::auth::{StaticToken, TokenProvider};
/// use client_core::SecretString;
///
/// let provider: Arc<dyn TokenProvider> =
///     Arc::new(StaticToken::new(SecretString::from("t0ken")));
/// # drop(provider);
/// ```
#[async_trait::async_trait]
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// A token that is valid now (obtaining or refreshing one if needed).
    async fn token(&self) -> Result<AccessToken>;

    /// The server rejected `rejected` (HTTP 401): forget it, so the next
    /// [`token`](Self::token) call obtains a new one. A provider must ignore
    /// the call if it already holds a different token (another caller
    /// refreshed in the meantime).
    async fn invalidate(&self, rejected: &AccessToken);

    /// Whether [`invalidate`](Self::invalidate) can lead to a different token.
    /// When `false`, a `401` is reported at once instead of retried.
    fn can_refresh(&self) -> bool {
        true
    }
}
