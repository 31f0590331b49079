//! Opening sinks: URL handling, secrets kept out of errors, several
//! connections to one database.

use sql_sink::{Column, Error, RowBatch, Sink, SqlType, TableDef, TableName, Watermark};

#[tokio::test]
async fn unknown_schemes_are_refused_without_echoing_the_url() {
    let err = Sink::open("mysql://admin:hunter2@db.example/prod")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedBackend { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(
        Sink::open("sqlite://").await,
        Err(Error::InvalidUrl { .. })
    ));
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_urls_need_the_feature() {
    let err = Sink::open("postgresql://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedBackend { .. }), "{err}");
    assert!(err.to_string().contains("postgres` feature"), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connection_errors_hide_the_password() {
    // Port 1 on localhost refuses connections.
    let err = Sink::open("postgresql://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("127.0.0.1:1"),
        "the message names the server: {text}"
    );
    let bad = Sink::open("postgresql://u:hunter2@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidUrl { .. }), "{bad}");
    assert!(!format!("{bad} {bad:?}").contains("hunter2"));
}

#[tokio::test]
async fn file_paths_and_sqlite_urls_open_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.db");
    let mut a = Sink::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let def = TableDef::new(
        "ns",
        "t",
        vec![Column::new("id", SqlType::Int32, false)],
        ["id"],
    );
    assert!(a.ensure_table(&def).await.unwrap().created);
    let b = Sink::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(b.list_tables().await.unwrap().len(), 1);
    assert!(!format!("{b:?}").is_empty());
}

/// Loads of different tables through several connections all land; SQLite
/// makes writers take turns instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_through_reopened_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let first = Sink::open_sqlite(dir.path().join("c.db")).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..4 {
        let mut sink = first.reopen().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let def = TableDef::new(
                "ns",
                format!("t{n}"),
                vec![
                    Column::new("id", SqlType::Int64, false),
                    Column::new("v", SqlType::Text, true),
                ],
                ["id"],
            );
            for round in 0..3 {
                let mut load = sink.begin_load(&def).await.unwrap();
                let mut rows = RowBatch::new(2);
                for i in 0..500 {
                    rows.push_row([Some(i.to_string().as_str()), Some("x")])
                        .unwrap();
                }
                load.upsert(&mut rows).await.unwrap();
                load.commit(Watermark::new(format!("r{round}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let tables = first.list_tables().await.unwrap();
    assert_eq!(tables.len(), 4);
    for s in tables {
        assert_eq!(s.row_count, 500);
        assert_eq!(s.watermark.unwrap().value, "r2");
    }
    assert!(
        first
            .table_status(&TableName::new("ns", "missing"))
            .await
            .unwrap()
            .is_none()
    );
}

/// `sslmode=require` really asks for TLS (and a server without TLS is
/// refused), while the default `prefer` falls back to a plain connection.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn sslmode_require_insists_on_tls() {
    let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await else {
        return;
    };
    let plain = Sink::open(pg.url()).await.unwrap();
    assert_eq!(plain.backend(), sql_sink::BackendKind::Postgres);
    for mode in ["require", "verify-full"] {
        let url = format!("{}?sslmode={mode}", pg.url());
        let err = Sink::open(&url).await.unwrap_err();
        assert!(
            !matches!(err, Error::InvalidUrl { .. }),
            "{mode} must be understood: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("does not support TLS"), "{mode}: {text}");
    }
}
