//! The BDS API client: listing data sets and extracts, downloading them.

mod builder;
mod rate;

use std::path::Path;
use std::sync::Arc;

use client_core::download::{Download, Progress, SavedFile};
use client_core::http::{HttpClient, Request};
use client_core::paging::{NextPageUrlPage, ObjectListPage, Page, paginate};
use client_core::retry::RandomSource;
use client_core::time::Sleeper;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

pub use builder::{
    ClientBuilder, DEFAULT_AUTH_URL, DEFAULT_LP_VERSION, DEFAULT_SCOPE, DEFAULT_TOKEN_STORE,
};
pub use rate::RateLimitStatus;

use crate::archive::ArchiveLimits;
use crate::error::{BdsError, Result};
use crate::known::{find_known, normalize_name};
use crate::model::{BrightspaceDataSet, DataSetReportInfo, DataSetSchema, Extract};
use rate::RateLimiter;

/// A Brightspace Data Sets client. Cheap to clone; clones share the token,
/// the connection pool and the rate-limit view.
///
/// ```no_run
/// # async fn demo() -> Result<(), bds_client::BdsError> {
/// use futures::TryStreamExt;
///
/// let client = bds_client::Client::from_env()?.build()?;
/// let data_sets: Vec<_> = client.data_sets().try_collect().await?;
/// for ds in &data_sets {
///     println!("{} {} ({} older extracts)", ds.plugin_id, ds.name, ds.previous_data_sets.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient,
    lp_version: String,
    page_size: Option<u32>,
    archive_limits: ArchiveLimits,
    verify_download_size: bool,
    rate: RateLimiter,
    /// Waits between attempts at a JSON body cut off mid-transfer.
    sleeper: Arc<dyn Sleeper>,
    /// Jitter of those waits.
    random: Arc<dyn RandomSource>,
}

/// A data set resolved by name or id, with every extract listed for it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DataSetExtracts {
    /// The data set's name as the server spells it.
    pub name: String,
    /// Its schema id, when the `/datasets/bds` routes gave one.
    pub schema_id: Option<String>,
    /// Plugin id of the full variant, if any.
    pub full_plugin_id: Option<String>,
    /// Plugin id of the differential variant, if any.
    pub differential_plugin_id: Option<String>,
    /// Every listed extract of both variants, in server order.
    pub extracts: Vec<Extract>,
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A builder filled from the `D2L_*` environment variables; see
    /// [`ClientBuilder::from_env`].
    pub fn from_env() -> Result<ClientBuilder> {
        ClientBuilder::from_env()
    }

    /// The rate-limit bucket as last reported by the server.
    pub fn rate_limit(&self) -> Option<RateLimitStatus> {
        self.inner.rate.status()
    }

    /// The caps applied when reading downloaded archives.
    pub fn archive_limits(&self) -> ArchiveLimits {
        self.inner.archive_limits
    }

    /// `GET /dataExport/bds/list`: the newest extract of every plugin.
    pub async fn list_plugins(&self) -> Result<Vec<DataSetReportInfo>> {
        self.get_json(self.lp("dataExport/bds/list")).await
    }

    /// `GET /dataExport/bds`, following `NextPageUrl`: every plugin with its
    /// newest extract and the older ones still available.
    pub fn data_sets(&self) -> impl Stream<Item = Result<BrightspaceDataSet>> + Send + 'static {
        let mut first = self.lp("dataExport/bds");
        if let Some(size) = self.inner.page_size {
            first.push_str(&format!("?pageSize={size}"));
        }
        self.pages::<BrightspaceDataSet, NextPageUrlPage<BrightspaceDataSet>>(first)
    }

    /// `GET /datasets/bds`, following `Next`: every data set with its full
    /// and differential plugins.
    pub fn schemas(&self) -> impl Stream<Item = Result<DataSetSchema>> + Send + 'static {
        self.pages::<DataSetSchema, ObjectListPage<DataSetSchema>>(self.lp("datasets/bds"))
    }

    /// `GET /datasets/bds/{schemaId}/extracts`: extracts of both variants.
    pub fn schema_extracts(
        &self,
        schema_id: &str,
    ) -> impl Stream<Item = Result<Extract>> + Send + 'static {
        let first = checked_id(schema_id).map(|s| self.lp(&format!("datasets/bds/{s}/extracts")));
        self.pages_or_error(first)
    }

    /// `GET /datasets/bds/{schemaId}/plugins/{pluginId}/extracts`.
    pub fn plugin_extracts(
        &self,
        schema_id: &str,
        plugin_id: &str,
    ) -> impl Stream<Item = Result<Extract>> + Send + 'static {
        let first = checked_id(schema_id)
            .and_then(|s| Ok((s, checked_id(plugin_id)?)))
            .map(|(s, p)| self.lp(&format!("datasets/bds/{s}/plugins/{p}/extracts")));
        self.pages_or_error(first)
    }

    /// `GET /datasets/bds/{schemaId}/plugins/{pluginId}/extracts/{extractId}`.
    pub async fn extract(
        &self,
        schema_id: &str,
        plugin_id: &str,
        extract_id: &str,
    ) -> Result<Extract> {
        let (s, p, e) = (
            checked_id(schema_id)?,
            checked_id(plugin_id)?,
            checked_id(extract_id)?,
        );
        self.get_json(self.lp(&format!("datasets/bds/{s}/plugins/{p}/extracts/{e}")))
            .await
    }

    /// Finds a data set by name (any spelling, see
    /// [`normalize_name`]), schema id or plugin id, and lists its extracts.
    /// Uses the `/datasets/bds` routes and falls back to `/dataExport/bds`
    /// (with `PreviousDataSets`) where those are missing or not permitted.
    pub async fn data_set_extracts(&self, name_or_id: &str) -> Result<DataSetExtracts> {
        match self.data_set_extracts_by_schema(name_or_id).await {
            Err(BdsError::Core(e)) if matches!(e.status(), Some(403 | 404)) => {
                tracing::info!(error = %e, "the /datasets/bds routes are not available; using /dataExport/bds");
                self.data_set_extracts_legacy(name_or_id).await
            }
            other => other,
        }
    }

    async fn data_set_extracts_by_schema(&self, name_or_id: &str) -> Result<DataSetExtracts> {
        let schemas: Vec<DataSetSchema> = self.schemas().try_collect().await?;
        let schema = schemas
            .into_iter()
            .find(|s| matches_schema(s, name_or_id))
            .ok_or_else(|| BdsError::UnknownDataSet(name_or_id.to_string()))?;
        let extracts: Vec<Extract> = self
            .schema_extracts(&schema.schema_id)
            .try_collect()
            .await?;
        Ok(DataSetExtracts {
            name: schema.name().unwrap_or(name_or_id).to_string(),
            full_plugin_id: schema.full.as_ref().map(|p| p.plugin_id.clone()),
            differential_plugin_id: schema.differential.as_ref().map(|p| p.plugin_id.clone()),
            schema_id: Some(schema.schema_id),
            extracts,
        })
    }

    async fn data_set_extracts_legacy(&self, name_or_id: &str) -> Result<DataSetExtracts> {
        let all: Vec<BrightspaceDataSet> = self.data_sets().try_collect().await?;
        let known = find_known(name_or_id);
        let wanted = normalize_name(known.map_or(name_or_id, |k| k.name));
        let ids: Vec<&str> = known
            .map(|k| {
                [k.full_plugin_id, k.differential_plugin_id]
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let members: Vec<&BrightspaceDataSet> = all
            .iter()
            .filter(|d| {
                d.plugin_id.eq_ignore_ascii_case(name_or_id.trim())
                    || ids.iter().any(|id| id.eq_ignore_ascii_case(&d.plugin_id))
                    || normalize_name(&d.name) == wanted
            })
            .collect();
        let Some(first) = members.first() else {
            return Err(BdsError::UnknownDataSet(name_or_id.to_string()));
        };
        let variant = |full: bool| {
            members
                .iter()
                .find(|d| d.full_data_set == Some(full))
                .map(|d| d.plugin_id.clone())
        };
        Ok(DataSetExtracts {
            name: known.map_or_else(|| first.name.clone(), |k| k.name.to_string()),
            schema_id: None,
            full_plugin_id: variant(true),
            differential_plugin_id: variant(false),
            extracts: members.iter().flat_map(|d| d.extracts()).collect(),
        })
    }

    /// Downloads an extract to `dest` (atomically: a temporary file renamed
    /// when complete). The request to the API carries the bearer token; the
    /// redirect to the storage host does not. Quota answers (`403` with
    /// `Retry-After`) and `429` are retried after the delay the server asks.
    pub async fn download(
        &self,
        extract: &Extract,
        dest: impl AsRef<Path>,
        progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
    ) -> Result<SavedFile> {
        let link = match extract
            .download_link
            .as_deref()
            .filter(|l| !l.trim().is_empty())
        {
            Some(link) if extract.currently_available => link,
            _ => {
                return Err(BdsError::NotDownloadable {
                    plugin_id: extract.plugin_id.clone(),
                    kind: extract.bds_type.to_string(),
                    queued: extract
                        .time()
                        .map_or_else(|| "an unknown time".into(), |t| t.to_rfc3339()),
                    reason: if extract.currently_available {
                        "it has no download link".into()
                    } else {
                        "it is temporarily unavailable (CurrentlyAvailable = false); try again later".into()
                    },
                });
            }
        };
        let size = extract
            .download_size
            .filter(|_| self.inner.verify_download_size);
        self.download_link(link, size, dest, progress).await
    }

    /// Downloads the newest extract of a plugin
    /// (`GET /dataExport/bds/download/{pluginId}`).
    pub async fn download_latest(
        &self,
        plugin_id: &str,
        dest: impl AsRef<Path>,
    ) -> Result<SavedFile> {
        let link = self.lp(&format!(
            "dataExport/bds/download/{}",
            checked_id(plugin_id)?
        ));
        self.download_link(&link, None, dest, None).await
    }

    /// Downloads any BDS download link (absolute, or a path below the tenant).
    pub async fn download_link(
        &self,
        link: &str,
        expected_size: Option<u64>,
        dest: impl AsRef<Path>,
        progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
    ) -> Result<SavedFile> {
        self.inner.rate.pace().await;
        let again = link.to_string();
        // The API link hands out a freshly signed storage URL on every call,
        // so an expired signature is cured by asking the API again.
        let mut download =
            Download::authenticated(link).on_expired(move || std::future::ready(Ok(again.clone())));
        if let Some(size) = expected_size {
            download = download.expected_size(size);
        }
        if let Some(progress) = progress {
            download = download.progress(move |p| progress(p));
        }
        let saved = download.to_file(&self.inner.http, dest).await?;
        tracing::debug!(bytes = saved.bytes, path = %saved.path.display(), "downloaded extract");
        Ok(saved)
    }

    fn lp(&self, route: &str) -> String {
        format!("/d2l/api/lp/{}/{route}", self.inner.lp_version)
    }

    /// GETs a JSON document. The core's retry loop ends when the headers
    /// arrive, so a body cut off mid-transfer (a connection lost after the
    /// status line) is requested again here, within the same attempt budget.
    async fn get_json<T: DeserializeOwned>(&self, target: String) -> Result<T> {
        let policy = self.inner.http.retry_policy();
        let mut attempt = 1;
        loop {
            self.inner.rate.pace().await;
            let response = self.inner.http.send(Request::get(target.clone())).await?;
            self.inner.rate.observe(response.headers());
            match response.json().await {
                Err(client_core::Error::Transport { kind, url, .. })
                    if attempt < policy.max_attempts =>
                {
                    let delay = policy.backoff(attempt, self.inner.random.as_ref());
                    tracing::warn!(%url, %kind, attempt, ?delay, "BDS response body cut off; requesting it again");
                    self.inner.sleeper.sleep(delay).await;
                    attempt += 1;
                }
                result => return Ok(result?),
            }
        }
    }

    fn pages<T, P>(&self, first: String) -> impl Stream<Item = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        P: DeserializeOwned + Into<Page<T>> + Send + 'static,
    {
        let client = self.clone();
        paginate(first, move |url| {
            let client = client.clone();
            async move { Ok::<Page<T>, BdsError>(client.get_json::<P>(url).await?.into()) }
        })
    }

    fn pages_or_error(
        &self,
        first: Result<String>,
    ) -> impl Stream<Item = Result<Extract>> + Send + 'static {
        match first {
            Ok(first) => self
                .pages::<Extract, ObjectListPage<Extract>>(first)
                .left_stream(),
            Err(e) => futures::stream::once(std::future::ready(Err(e))).right_stream(),
        }
    }
}

/// Ids go into URL paths; anything but a plain token is refused.
fn checked_id(id: &str) -> Result<&str> {
    let id = id.trim();
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain && id != "." && id != ".." {
        Ok(id)
    } else {
        Err(BdsError::Config(format!(
            "{id:?} is not a valid BDS id (expected a GUID or number)"
        )))
    }
}

fn matches_schema(schema: &DataSetSchema, name_or_id: &str) -> bool {
    let wanted = name_or_id.trim();
    if schema.schema_id.eq_ignore_ascii_case(wanted) || schema.has_plugin(wanted) {
        return true;
    }
    let key = normalize_name(find_known(wanted).map_or(wanted, |k| k.name));
    [&schema.full, &schema.differential]
        .into_iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .any(|n| normalize_name(n) == key)
}
