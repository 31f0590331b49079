//! The single-flight token cache.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::{AccessToken, TokenProvider};
use crate::time::{Clock, SystemClock};
use crate::{Error, Result};

/// A token freshly obtained from a token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub struct GrantedToken {
    /// The access token.
    pub access_token: SecretString,
    /// Its lifetime as the server stated it (`expires_in`), if it did.
    pub expires_in: Option<Duration>,
}

impl GrantedToken {
    /// A token with an optional lifetime.
    pub fn new(access_token: SecretString, expires_in: Option<Duration>) -> Self {
        Self {
            access_token,
            expires_in,
        }
    }
}

impl fmt::Debug for GrantedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantedToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// One way of obtaining a new access token (an OAuth grant, a login call).
///
/// A grant does no caching; wrap it in a [`TokenCache`] to get a
/// [`TokenProvider`].
#[async_trait::async_trait]
pub trait TokenGrant: Send + Sync + fmt::Debug {
    /// Asks the token endpoint for a new access token.
    async fn fetch(&self) -> Result<GrantedToken>;
}

struct Cached {
    token: AccessToken,
    /// When to stop handing the token out and refresh it; `None` = until rejected.
    refresh_at: Option<Instant>,
}

/// What the lock protects.
#[derive(Default)]
struct Slot {
    cached: Option<Cached>,
    /// The error of the last fetch, if it failed, tagged with its number.
    failure: Option<(u64, Error)>,
}

/// Caches the token of a [`TokenGrant`] and refreshes it shortly before it
/// expires.
///
/// - **Refresh margin**: a token is refreshed once less than the margin
///   (default [`DEFAULT_REFRESH_MARGIN`](Self::DEFAULT_REFRESH_MARGIN), 5
///   minutes) of its lifetime remains, but never before half its lifetime has
///   passed, so short-lived tokens are still reused.
/// - **Single flight**: the refresh runs under a lock; concurrent callers wait
///   for it and then share its result (the token, or the error), so a burst
///   of calls with an expired token makes exactly one token request. This
///   matters for rotating refresh tokens, which must never be traded twice.
/// - **Invalidation**: [`TokenProvider::invalidate`] drops the token the
///   server rejected (and only that one), so the next call refreshes.
///
/// ```no_run
/// # async fn demo() -> client_core::Result<()> {
/// use client_core::auth::{BasicCredentials, ClientCredentialsGrant, TokenCache, TokenProvider};
/// use client_core::http::HttpClient;
/// use client_core::SecretString;
///
/// let http = HttpClient::builder().build()?;
/// let creds = BasicCredentials::new("client-id", SecretString::from("client-secret"));
/// let grant = ClientCredentialsGrant::new(http, "https://api-gateway.instructure.com/ids/auth/login", creds)?;
/// let cache = TokenCache::new(grant);
/// let token = cache.token().await?;
/// # drop(token);
/// # Ok(()) }
/// ```
pub struct TokenCache {
    grant: Arc<dyn TokenGrant>,
    clock: Arc<dyn Clock>,
    margin: Duration,
    slot: tokio::sync::Mutex<Slot>,
    /// Number of finished fetches; read before queueing for the lock, so a
    /// caller can tell whether a fetch finished while it waited.
    fetches: AtomicU64,
}

impl TokenCache {
    /// How long before expiry a token is refreshed, unless set otherwise.
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(300);

    /// A cache over `grant`, using the system clock and the default margin.
    pub fn new(grant: impl TokenGrant + 'static) -> Self {
        Self::from_arc(Arc::new(grant))
    }

    /// A cache over a shared grant.
    pub fn from_arc(grant: Arc<dyn TokenGrant>) -> Self {
        Self {
            grant,
            clock: Arc::new(SystemClock),
            margin: Self::DEFAULT_REFRESH_MARGIN,
            slot: tokio::sync::Mutex::new(Slot::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Refreshes tokens when less than `margin` of their lifetime remains.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Reads time from `clock` (tests pass a [`ManualClock`](crate::time::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn cache_entry(&self, granted: GrantedToken, obtained_at: Instant) -> Cached {
        let (expires_at, refresh_at) = match granted.expires_in {
            Some(lifetime) => {
                let usable = lifetime.saturating_sub(self.margin).max(lifetime / 2);
                (Some(obtained_at + lifetime), Some(obtained_at + usable))
            }
            None => (None, None),
        };
        Cached {
            token: AccessToken::new(granted.access_token, expires_at),
            refresh_at,
        }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("grant", &self.grant)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenProvider for TokenCache {
    async fn token(&self) -> Result<AccessToken> {
        let seen = self.fetches.load(Ordering::Acquire);
        // Holding the lock across the fetch is the single flight: callers
        // queue here and find the fresh token when they get the lock.
        let mut slot = self.slot.lock().await;
        if let Some(cached) = &slot.cached {
            let fresh = cached.refresh_at.is_none_or(|at| self.clock.now() < at);
            if fresh {
                return Ok(cached.token.clone());
            }
        }
        // A fetch that failed while we queued answers for us too, so a
        // failing token endpoint sees one request per burst, not one per caller.
        let finished = self.fetches.load(Ordering::Acquire);
        if let Some((n, error)) = &slot.failure
            && finished != seen
            && *n == finished
        {
            return Err(error.duplicate());
        }
        // Measured before the request, so the computed expiry errs early.
        let obtained_at = self.clock.now();
        let outcome = self.grant.fetch().await;
        let number = self.fetches.fetch_add(1, Ordering::AcqRel) + 1;
        match outcome {
            Ok(granted) => {
                let entry = self.cache_entry(granted, obtained_at);
                let token = entry.token.clone();
                *slot = Slot {
                    cached: Some(entry),
                    failure: None,
                };
                Ok(token)
            }
            Err(error) => {
                slot.failure = Some((number, error.duplicate()));
                Err(error)
            }
        }
    }

    async fn invalidate(&self, rejected: &AccessToken) {
        let mut slot = self.slot.lock().await;
        if slot
            .cached
            .as_ref()
            .is_some_and(|c| c.token.same_token_as(rejected))
        {
            slot.cached = None;
        }
    }
}
