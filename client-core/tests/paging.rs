//! Next-page streams: over scripted fetch functions and over real HTTP
//! (wiremock) with both Valence envelopes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use client_core::Error;
use client_core::paging::{NextPageUrlPage, ObjectListPage, Page, paginate};
use futures::{StreamExt, TryStreamExt};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A fetch function serving `pages` by URL and recording the URLs asked for.
type Script = HashMap<&'static str, Result<Page<u32>, &'static str>>;

type Fetched = futures::future::Ready<Result<Page<u32>, Error>>;
type SeenUrls = Arc<Mutex<Vec<String>>>;

fn fetcher(script: Script) -> (SeenUrls, impl FnMut(String) -> Fetched) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let fetch = move |url: String| {
        log.lock().unwrap().push(url.clone());
        let answer = match script.get(url.as_str()) {
            Some(Ok(page)) => Ok(page.clone()),
            Some(Err(message)) => Err(Error::Config((*message).to_string())),
            None => Err(Error::Config(format!("unexpected url {url}"))),
        };
        futures::future::ready(answer)
    };
    (seen, fetch)
}

fn page(items: &[u32], next: Option<&str>) -> Result<Page<u32>, &'static str> {
    Ok(Page::new(items.to_vec(), next.map(str::to_string)))
}

#[tokio::test]
async fn items_of_all_pages_are_yielded_in_order() {
    let (seen, fetch) = fetcher(HashMap::from([
        ("p1", page(&[1, 2], Some("p2"))),
        ("p2", page(&[3], Some("p3"))),
        ("p3", page(&[4, 5], None)),
    ]));
    let items: Vec<u32> = paginate("p1", fetch).try_collect().await.unwrap();
    assert_eq!(items, [1, 2, 3, 4, 5]);
    assert_eq!(*seen.lock().unwrap(), ["p1", "p2", "p3"]);
}

#[tokio::test]
async fn empty_pages_are_skipped_and_an_empty_first_page_gives_nothing() {
    let (_, fetch) = fetcher(HashMap::from([
        ("p1", page(&[1], Some("p2"))),
        ("p2", page(&[], Some("p3"))),
        ("p3", page(&[2], None)),
    ]));
    let items: Vec<u32> = paginate("p1", fetch).try_collect().await.unwrap();
    assert_eq!(items, [1, 2]);

    let (seen, fetch) = fetcher(HashMap::from([("only", page(&[], None))]));
    let items: Vec<u32> = paginate("only", fetch).try_collect().await.unwrap();
    assert!(items.is_empty());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_null_or_empty_next_link_stops_the_stream() {
    let (seen, fetch) = fetcher(HashMap::from([("p1", page(&[1], Some("")))]));
    let items: Vec<u32> = paginate("p1", fetch).try_collect().await.unwrap();
    assert_eq!(items, [1]);
    assert_eq!(
        *seen.lock().unwrap(),
        ["p1"],
        "an empty link must not be fetched"
    );
}

#[tokio::test]
async fn an_error_on_page_three_comes_after_the_items_of_pages_one_and_two_and_ends_the_stream() {
    let (seen, fetch) = fetcher(HashMap::from([
        ("p1", page(&[1, 2], Some("p2"))),
        ("p2", page(&[3], Some("p3"))),
        ("p3", Err("page 3 exploded")),
        ("p4", page(&[9], None)),
    ]));
    let results: Vec<Result<u32, Error>> = paginate("p1", fetch).collect().await;
    assert_eq!(results.len(), 4, "{results:?}");
    let oks: Vec<u32> = results[..3].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(oks, [1, 2, 3]);
    assert!(matches!(&results[3], Err(Error::Config(m)) if m == "page 3 exploded"));
    assert_eq!(*seen.lock().unwrap(), ["p1", "p2", "p3"]);
}

#[tokio::test]
async fn a_next_link_to_the_same_page_is_an_error_not_an_endless_loop() {
    let (_, fetch) = fetcher(HashMap::from([("p1", page(&[1], Some("p1")))]));
    let results: Vec<Result<u32, Error>> = paginate("p1", fetch).collect().await;
    assert_eq!(results.len(), 1);
    let err = results[0].as_ref().unwrap_err();
    assert!(
        err.to_string().contains("points back to the same page"),
        "{err}"
    );
}

async fn get<T: serde::de::DeserializeOwned>(url: String) -> Result<T, Error> {
    // reqwest is built without a default TLS provider; install ring's (a no-op if already set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::get(&url)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    response
        .json::<T>()
        .await
        .map_err(|e| Error::Config(e.to_string()))
}

#[tokio::test]
async fn next_page_url_envelope_over_http() {
    let server = MockServer::start().await;
    let base = format!("{}/d2l/api/lp/1.30/dataexport/bds", server.uri());
    Mock::given(method("GET"))
        .and(path("/d2l/api/lp/1.30/dataexport/bds"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "NextPageUrl": null, "PrevPageUrl": format!("{base}?page=1"), "BrightspaceDataSets": ["c"]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/d2l/api/lp/1.30/dataexport/bds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "NextPageUrl": format!("{base}?page=2&pageSize=2"), "PrevPageUrl": null, "BrightspaceDataSets": ["a", "b"]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let names: Vec<String> = paginate(base.clone(), |url| async move {
        get::<NextPageUrlPage<String>>(url).await.map(Page::from)
    })
    .try_collect()
    .await
    .unwrap();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn object_list_envelope_over_http() {
    let server = MockServer::start().await;
    let first = format!("{}/d2l/api/lp/1.43/datasets/bds", server.uri());
    let second = format!("{}/d2l/api/lp/1.43/datasets/bds/next-token", server.uri());
    Mock::given(method("GET"))
        .and(path("/d2l/api/lp/1.43/datasets/bds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "Objects": [1, 2], "Next": second })),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/d2l/api/lp/1.43/datasets/bds/next-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "Objects": [3], "Next": null })),
        )
        .mount(&server)
        .await;

    let ids: Vec<u32> = paginate(first, |url| async move {
        get::<ObjectListPage<u32>>(url).await.map(Page::from)
    })
    .try_collect()
    .await
    .unwrap();
    assert_eq!(ids, [1, 2, 3]);
}

fn bearer_client(base: &str) -> client_core::http::HttpClient {
    use client_core::auth::StaticToken;
    client_core::http::HttpClient::builder()
        .base_url(base)
        .bearer(Arc::new(StaticToken::new(client_core::SecretString::from(
            "tok",
        ))))
        .build()
        .unwrap()
}

#[tokio::test]
async fn paginate_json_follows_absolute_and_relative_links_with_credentials() {
    use client_core::paging::paginate_json;
    let server = MockServer::start().await;
    let second = format!("{}/d2l/api/lp/1.43/datasets/bds?bookmark=2", server.uri());
    Mock::given(path("/d2l/api/lp/1.43/datasets/bds"))
        .and(query_param("bookmark", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "Objects": [3], "Next": "bds?bookmark=3" })),
        )
        .mount(&server)
        .await;
    Mock::given(path("/d2l/api/lp/1.43/datasets/bds"))
        .and(query_param("bookmark", "3"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "Objects": [4], "Next": null })),
        )
        .mount(&server)
        .await;
    Mock::given(path("/d2l/api/lp/1.43/datasets/bds"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "Objects": [1, 2], "Next": second })),
        )
        .mount(&server)
        .await;

    let client = bearer_client(&server.uri());
    let ids: Vec<u32> =
        paginate_json::<ObjectListPage<u32>, _>(&client, "/d2l/api/lp/1.43/datasets/bds")
            .try_collect()
            .await
            .unwrap();
    assert_eq!(ids, [1, 2, 3, 4]);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer tok")
    }));
}

#[tokio::test]
async fn paginate_json_refuses_a_next_link_to_another_host() {
    use client_core::paging::paginate_json;
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "Objects": [1], "Next": format!("{}/list?page=2&sig=secret", elsewhere.uri())
        })))
        .mount(&server)
        .await;

    let client = bearer_client(&server.uri());
    let results: Vec<Result<u32, Error>> =
        paginate_json::<ObjectListPage<u32>, _>(&client, "/list")
            .collect()
            .await;
    assert_eq!(results.len(), 2);
    assert_eq!(*results[0].as_ref().unwrap(), 1);
    let err = results[1].as_ref().unwrap_err();
    assert!(
        matches!(err, Error::InvalidRequest(m) if m.contains("another host")),
        "{err}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}
