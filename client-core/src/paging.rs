//! Following next-page links.
//!
//! A service returns a list one page at a time, each page carrying the
//! absolute URL of the next one (or `null` at the end). [`paginate`] turns a
//! first URL and an async page-fetch function into a [`Stream`] of items;
//! [`paginate_json`] does the fetching with an [`HttpClient`] and one of the
//! envelopes. The two envelopes the services use deserialize into
//! [`NextPageUrlPage`] and [`ObjectListPage`], both convertible into
//! [`Page`].
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use client_core::http::HttpClient;
//! use client_core::paging::{paginate_json, ObjectListPage};
//!
//! # async fn demo(client: HttpClient) -> client_core::Result<()> {
//! let schemas: Vec<serde_json::Value> =
//!     paginate_json::<ObjectListPage<serde_json::Value>, _>(&client, "/d2l/api/lp/1.43/datasets/bds")
//!         .try_collect()
//!         .await?;
//! # drop(schemas);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::Future;

use futures::Stream;
use futures::future::Either;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::error::{Error, redact_url};
use crate::http::{HttpClient, Request};

/// One page of a list: its items and the absolute URL of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items on this page, in server order.
    pub items: Vec<T>,
    /// The next page's URL; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page. An empty or blank `next` is treated as "no next page", since
    /// servers use `null` and `""` interchangeably.
    pub fn new(items: Vec<T>, next: Option<String>) -> Self {
        let next = next.filter(|n| !n.trim().is_empty());
        Self { items, next }
    }
}

/// A stream of every item of every page, starting at `first_url`.
///
/// `fetch` is called with each page URL in turn (the first one, then each
/// page's `next`) and stops after a page without a next link. Pages are
/// fetched lazily, one at a time, when the items of the previous page have
/// been consumed; empty pages in the middle are skipped over.
///
/// An error from `fetch` is yielded after all items of earlier pages, and
/// then the stream ends. A page whose next link is the URL just fetched
/// would loop forever, so it ends the stream with [`Error::Decode`].
pub fn paginate<T, E, F, Fut>(
    first_url: impl Into<String>,
    fetch: F,
) -> impl Stream<Item = Result<T, E>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
    E: From<Error>,
{
    let start = Cursor {
        fetch,
        buffered: VecDeque::new(),
        next: Some(first_url.into()),
    };
    futures::stream::try_unfold(start, |mut cursor| async move {
        loop {
            if let Some(item) = cursor.buffered.pop_front() {
                return Ok(Some((item, cursor)));
            }
            let Some(url) = cursor.next.take() else {
                return Ok(None);
            };
            let fetched = (cursor.fetch)(url.clone()).await?;
            // Page::new treats a blank link as the end of the list.
            let page = Page::new(fetched.items, fetched.next);
            if page.next.as_deref() == Some(url.as_str()) {
                return Err(Error::Decode {
                    url: redact_url(&url),
                    message: "the page's next-page link points back to the same page, \
                              so following it would never end"
                        .into(),
                    body_snippet: String::new(),
                }
                .into());
            }
            cursor.buffered = page.items.into();
            cursor.next = page.next;
        }
    })
}

/// A stream of every item of every page, fetched with `client` (and its
/// credentials) and decoded from the envelope `P`.
///
/// `first` is a path below the client's base URL or an absolute URL. Next
/// links are resolved against the first page's URL and must stay on its
/// scheme, host and port: a link to another origin ends the stream with
/// [`Error::InvalidRequest`] instead of sending the client's credentials
/// there. Errors end the stream as in [`paginate`].
pub fn paginate_json<P, T>(
    client: &HttpClient,
    first: &str,
) -> impl Stream<Item = Result<T, Error>> + Send + 'static
where
    P: DeserializeOwned + Into<Page<T>> + Send + 'static,
    T: Send + 'static,
{
    let first = match client.resolve(first) {
        Ok(url) => url,
        Err(e) => return Either::Left(futures::stream::once(async move { Err(e) })),
    };
    let client = client.clone();
    Either::Right(paginate(first.to_string(), move |link: String| {
        let client = client.clone();
        let first = first.clone();
        async move {
            let url = same_origin_link(&first, &link)?;
            let page: P = client.send_json(Request::get(url.as_str())).await?;
            Ok(page.into())
        }
    }))
}

/// `link` resolved against `first`, if it is on the same origin.
fn same_origin_link(first: &Url, link: &str) -> Result<Url, Error> {
    let url = first.join(link).map_err(|e| {
        Error::InvalidRequest(format!(
            "next-page link {:?} is not a valid URL: {e}",
            redact_url(link)
        ))
    })?;
    if url.origin() != first.origin() {
        return Err(Error::InvalidRequest(format!(
            "the next-page link {} leaves {}; not sending the client's credentials to another host",
            redact_url(url.as_str()),
            first.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

struct Cursor<T, F> {
    fetch: F,
    buffered: VecDeque<T>,
    next: Option<String>,
}

/// The Valence route-specific paged result set:
/// `{ "NextPageUrl": …, "PrevPageUrl": …, "BrightspaceDataSets": [...] }`
/// (D2L `GET /dataExport/bds`).
///
/// The item key is route-specific; `BrightspaceDataSets`, `Objects` and
/// `Items` are accepted. The item array must be present (`null` counts as
/// empty) so a misnamed key is a decode error rather than a silently empty
/// list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
#[non_exhaustive]
pub struct NextPageUrlPage<T> {
    /// Absolute URL of the next page, `null` on the last one.
    #[serde(rename = "NextPageUrl", default)]
    pub next_page_url: Option<String>,
    /// Absolute URL of the previous page, `null` on the first one.
    #[serde(rename = "PrevPageUrl", default)]
    pub prev_page_url: Option<String>,
    /// The items.
    #[serde(
        rename = "BrightspaceDataSets",
        alias = "Objects",
        alias = "Items",
        deserialize_with = "null_as_empty"
    )]
    pub items: Vec<T>,
}

impl<T> From<NextPageUrlPage<T>> for Page<T> {
    fn from(page: NextPageUrlPage<T>) -> Self {
        Page::new(page.items, page.next_page_url)
    }
}

/// The Valence `ObjectListPage`: `{ "Next": <URL|null>, "Objects": [...] }`
/// (D2L `GET /datasets/bds…`). `Items` is accepted for `Objects`; the array
/// must be present (`null` counts as empty).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
#[non_exhaustive]
pub struct ObjectListPage<T> {
    /// Absolute URL of the next page, `null` or absent on the last one.
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
    /// The items.
    #[serde(
        rename = "Objects",
        alias = "Items",
        deserialize_with = "null_as_empty"
    )]
    pub objects: Vec<T>,
}

impl<T> From<ObjectListPage<T>> for Page<T> {
    fn from(page: ObjectListPage<T>) -> Self {
        Page::new(page.objects, page.next)
    }
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_next_means_last_page() {
        assert_eq!(Page::<u8>::new(vec![], Some("  ".into())).next, None);
        assert_eq!(
            Page::<u8>::new(vec![], Some("https://x/2".into()))
                .next
                .as_deref(),
            Some("https://x/2")
        );
    }

    #[test]
    fn next_page_url_envelope_decodes_the_d2l_shape() {
        let json = r#"{ "NextPageUrl": "https://lms.example/d2l/api/lp/1.30/dataexport/bds?page=2&pageSize=2",
                        "PrevPageUrl": null, "BrightspaceDataSets": [1, 2] }"#;
        let page: Page<u32> = serde_json::from_str::<NextPageUrlPage<u32>>(json)
            .unwrap()
            .into();
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            page.next.as_deref(),
            Some("https://lms.example/d2l/api/lp/1.30/dataexport/bds?page=2&pageSize=2")
        );

        let last: Page<u32> =
            serde_json::from_str::<NextPageUrlPage<u32>>(r#"{"NextPageUrl":null,"Objects":null}"#)
                .unwrap()
                .into();
        assert_eq!(last, Page::new(vec![], None));
    }

    #[test]
    fn object_list_envelope_decodes_and_requires_its_items() {
        let page: Page<String> =
            serde_json::from_str::<ObjectListPage<String>>(r#"{"Objects":["a"],"Next":null}"#)
                .unwrap()
                .into();
        assert_eq!(page, Page::new(vec!["a".to_string()], None));
        let page: Page<String> = serde_json::from_str::<ObjectListPage<String>>(
            r#"{"Items":["b"],"Next":"https://x/2"}"#,
        )
        .unwrap()
        .into();
        assert_eq!(page.next.as_deref(), Some("https://x/2"));

        let err = serde_json::from_str::<ObjectListPage<String>>(r#"{"Next":null,"Entries":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("missing field `Objects`"), "{err}");
    }
}
