//! Authentication: access tokens, the providers that hand them out, the
//! single-flight [`TokenCache`], and the grants the four services use.
//!
//! The pieces fit together like this:
//!
//! - a *grant* ([`TokenGrant`]) knows how to obtain a fresh access token from a
//!   token endpoint: [`ClientCredentialsGrant`] (DAP), [`RefreshTokenGrant`]
//!   with a [`TokenStore`] (D2L, rotating refresh tokens), [`PasswordGrant`]
//!   (LiquidAnalytics), [`JsonLoginGrant`] (Toucan);
//! - a [`TokenCache`] wraps a grant and is a [`TokenProvider`]: it hands out the
//!   cached token, refreshes it shortly before it expires, lets only one
//!   refresh run at a time, and drops a token the server rejected;
//! - the [`HttpClient`](crate::http::HttpClient) asks its provider for a token
//!   on every attempt and reports a `401` back through
//!   [`TokenProvider::invalidate`].
//!
//! [`StaticToken`] is a provider for a fixed bearer token, and
//! [`BasicCredentials`] are for services that take HTTP Basic on every call.
//!
//! No type here prints a secret in `Debug`, and none implements `Display`.

mod basic;
mod cache;
mod client_credentials;
mod json_login;
mod oauth;
mod password;
mod refresh_token;
mod static_token;
mod store;
mod token;

pub use basic::BasicCredentials;
pub use cache::{GrantedToken, TokenCache, TokenGrant};
pub use client_credentials::ClientCredentialsGrant;
pub use json_login::JsonLoginGrant;
pub use password::PasswordGrant;
pub use refresh_token::RefreshTokenGrant;
pub use static_token::StaticToken;
pub use store::{FileTokenStore, MemoryTokenStore, TokenStore};
pub use token::{AccessToken, TokenProvider};
