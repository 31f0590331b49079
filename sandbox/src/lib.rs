#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
//!
//! # Layout
//!
//! Shared machinery: [`server`] (bind + serve + drop guard + [`server::instrument`]),
//! [`faults`] (fault knobs and middleware), [`stats`] (request counters), [`data`]
//! (deterministic nasty values). One module per service: [`dap`], [`bds`], [`ld`], [`toucan`].
//!
//! # Contract of a service module
//!
//! Each service module `crate::<svc>` (`dap`, `bds`, `ld`, `toucan`) exposes:
//!
//! - `pub struct <Svc>Config`: `Clone + Debug + Default`, with at least `pub port: u16`
//!   (0 = a free port) and `pub seed: u64` (data generation seed), plus whatever the service
//!   needs (row counts, token lifetime, ...). Sensible defaults: a small data set.
//! - `pub struct <Svc>Credentials`: `Clone + Debug + serde::Serialize`, the (fake, public) values
//!   a client needs, with the field names the service uses (`client_id`, `client_secret`,
//!   `refresh_token`, `username`, `password`, ...). The binary prints them as JSON.
//! - `pub struct <Svc>Server` holding a [`server::ServerGuard`] (dropping it stops the service),
//!   with `pub fn base_url(&self) -> &str`, `pub fn credentials(&self) -> <Svc>Credentials`,
//!   `pub fn faults(&self) -> &Faults` and `pub fn stats(&self) -> &Stats`.
//! - `pub async fn start(config: <Svc>Config, faults: Faults, stats: Stats) ->
//!   std::io::Result<<Svc>Server>`: builds the service router, passes it through
//!   [`server::instrument`] (which adds `/__sandbox/faults`, `/__sandbox/stats`, per-route
//!   counting and the generic faults; use [`faults::Faults::rendered_by`] so injected errors use the
//!   service's error body), merges its own `/__sandbox/...` control routes, and calls
//!   [`server::serve`]. Services call [`stats::Stats::record_token_request`] on token endpoints
//!   and [`stats::Stats::record_blob_request`] on pre-signed/blob routes, and read
//!   [`faults::Faults::url_ttl`] / [`faults::Faults::token_ttl`].

pub mod data;
pub mod faults;
pub mod server;
pub mod stats;

pub mod bds;
pub mod dap;
pub mod ld;
pub mod toucan;

pub use faults::{FaultConfig, Faults};
pub use server::ServerGuard;
pub use stats::{Stats, StatsSnapshot};
