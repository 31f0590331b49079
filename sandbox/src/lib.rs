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

use serde_json::{Value, json};

pub use faults::{FaultConfig, Faults};
pub use server::ServerGuard;
pub use stats::{Stats, StatsSnapshot};

/// Which services [`Sandbox::start`] runs and how; `None` leaves a service out.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// The fake DAP service.
    pub dap: Option<dap::DapConfig>,
    /// The fake Brightspace Data Sets tenant.
    pub bds: Option<bds::BdsConfig>,
    /// The fake LiquidAnalytics batch API.
    pub ld: Option<ld::LdConfig>,
    /// The fake Toucan Toco API.
    pub toucan: Option<toucan::ToucanConfig>,
}

impl Default for SandboxConfig {
    /// Every service with its default (small) data set on free ports.
    fn default() -> Self {
        Self {
            dap: Some(dap::DapConfig::default()),
            bds: Some(bds::BdsConfig::default()),
            ld: Some(ld::LdConfig::default()),
            toucan: Some(toucan::ToucanConfig::default()),
        }
    }
}

impl SandboxConfig {
    /// No service at all; add the ones you want with the `with_*` methods.
    pub fn none() -> Self {
        Self {
            dap: None,
            bds: None,
            ld: None,
            toucan: None,
        }
    }

    /// Runs the DAP service with this configuration.
    pub fn with_dap(mut self, config: dap::DapConfig) -> Self {
        self.dap = Some(config);
        self
    }

    /// Runs the BDS service with this configuration.
    pub fn with_bds(mut self, config: bds::BdsConfig) -> Self {
        self.bds = Some(config);
        self
    }

    /// Runs the LD service with this configuration.
    pub fn with_ld(mut self, config: ld::LdConfig) -> Self {
        self.ld = Some(config);
        self
    }

    /// Runs the Toucan service with this configuration.
    pub fn with_toucan(mut self, config: toucan::ToucanConfig) -> Self {
        self.toucan = Some(config);
        self
    }
}

/// The running fake services. Dropping it stops all of them.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let sandbox = sandbox::Sandbox::start(sandbox::SandboxConfig::default()).await?;
/// if let Some(dap) = &sandbox.dap {
///     println!("DAP_API_URL={}", dap.base_url());
/// }
/// println!("{}", sandbox.describe());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Sandbox {
    /// The fake DAP service, if started.
    pub dap: Option<dap::DapServer>,
    /// The fake BDS tenant, if started.
    pub bds: Option<bds::BdsServer>,
    /// The fake LD batch API, if started.
    pub ld: Option<ld::LdServer>,
    /// The fake Toucan API, if started.
    pub toucan: Option<toucan::ToucanServer>,
}

impl Sandbox {
    /// Starts the configured services on `127.0.0.1`, each with its own fault knobs and counters.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Self> {
        let dap = match config.dap {
            Some(c) => Some(dap::start(c, Faults::new(), Stats::new()).await?),
            None => None,
        };
        let bds = match config.bds {
            Some(c) => Some(bds::start(c, Faults::new(), Stats::new()).await?),
            None => None,
        };
        let ld = match config.ld {
            Some(c) => Some(ld::start(c, Faults::new(), Stats::new()).await?),
            None => None,
        };
        let toucan = match config.toucan {
            Some(c) => Some(toucan::start(c, Faults::new(), Stats::new()).await?),
            None => None,
        };
        Ok(Self {
            dap,
            bds,
            ld,
            toucan,
        })
    }

    /// URLs and (fake) credentials of every running service as one JSON object, with the
    /// environment variables the clients read (`DAP_API_URL`, `D2L_BASE_URL`, ...).
    pub fn describe(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(dap) = &self.dap {
            let creds = dap.credentials();
            out.insert(
                "dap".into(),
                json!({
                    "base_url": dap.base_url(),
                    "blob_url": dap.blob_url(),
                    "credentials": creds,
                    "env": {
                        "DAP_API_URL": dap.base_url(),
                        "DAP_CLIENT_ID": creds.client_id,
                        "DAP_CLIENT_SECRET": creds.client_secret,
                    },
                }),
            );
        }
        if let Some(bds) = &self.bds {
            let creds = bds.credentials();
            out.insert(
                "bds".into(),
                json!({
                    "base_url": bds.base_url(),
                    "blob_url": bds.blob_url(),
                    "env": {
                        "D2L_BASE_URL": creds.base_url,
                        "D2L_AUTH_URL": creds.auth_url,
                        "D2L_CLIENT_ID": creds.client_id,
                        "D2L_CLIENT_SECRET": creds.client_secret,
                        "D2L_REFRESH_TOKEN": creds.refresh_token,
                    },
                    "credentials": creds,
                }),
            );
        }
        if let Some(ld) = &self.ld {
            let creds = ld.credentials();
            out.insert(
                "ld".into(),
                json!({
                    "base_url": ld.base_url(),
                    "env": {
                        "LD_BASE_URL": creds.base_url,
                        "LD_CLIENT_ID": creds.client_id,
                        "LD_CLIENT_SECRET": creds.client_secret,
                        "LD_USERNAME": creds.username,
                        "LD_PASSWORD": creds.password,
                        "LD_COMMUNITY": creds.community,
                    },
                    "credentials": creds,
                }),
            );
        }
        if let Some(toucan) = &self.toucan {
            let creds = toucan.credentials();
            out.insert(
                "toucan".into(),
                json!({
                    "base_url": toucan.base_url(),
                    "env": {
                        "TOUCAN_API_URL": creds.api_url,
                        "TOUCAN_SMALL_APP": creds.small_app,
                        "TOUCAN_USERNAME": creds.username,
                        "TOUCAN_PASSWORD": creds.password,
                    },
                    "credentials": creds,
                }),
            );
        }
        Value::Object(out)
    }
}
