//! One suite of scenarios, run against SQLite and (when available)
//! PostgreSQL; the PostgreSQL run must observe exactly what SQLite observes.

use chrono::{TimeZone, Utc};
use sql_sink::{
    Column, Error, Fault, RowBatch, Sink, SqlType, TableDef, TableName, Value, Watermark,
};

/// What a scenario saw, compared across backends.
type Observed = Vec<String>;

fn batch(columns: usize, rows: &[&[Option<&str>]]) -> RowBatch {
    let mut b = RowBatch::new(columns);
    for r in rows {
        b.push_row(r.iter().copied()).expect("row shape");
    }
    b
}

async fn snapshot(sink: &Sink, table: &TableName) -> String {
    let rows = sink.read_rows(table).await.expect("read rows");
    let status = sink
        .table_status(table)
        .await
        .expect("status")
        .expect("known table");
    format!(
        "rows={rows:?}\nwatermark={:?}\ncount={}\ncolumns={:?}",
        status.watermark, status.row_count, status.definition.columns
    )
}

fn users(ns: &str) -> TableDef {
    TableDef::new(
        ns,
        "users",
        vec![
            Column::new("id", SqlType::Int64, false),
            Column::new("name", SqlType::Text, true),
            Column::new("active", SqlType::Bool, true),
        ],
        ["id"],
    )
}

async fn create_upsert_delete(sink: &mut Sink, ns: &str) -> Observed {
    let def = users(ns);
    let t = def.table_name();
    let mut seen = Vec::new();
    assert_eq!(sink.watermark(&t).await.unwrap(), None);

    let mut load = sink.begin_load(&def).await.unwrap();
    assert!(load.evolution().created);
    let mut rows = batch(
        3,
        &[
            &[Some("1"), Some("Ada"), Some("true")],
            &[Some("2"), Some("Brian"), Some("f")],
            &[Some("3"), None, None],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    assert!(rows.is_empty(), "upsert hands the buffers back empty");
    rows.push_row([Some("4"), Some("Dora"), Some("1")]).unwrap();
    rows.push_row([Some("4"), Some("Dora (last wins)"), Some("0")])
        .unwrap();
    load.upsert(&mut rows).await.unwrap();
    let summary = load
        .commit(Watermark::new("w1").with_schema_version(1))
        .await
        .unwrap();
    assert_eq!(summary.upserted_rows, 5);
    let snap = snapshot(sink, &t).await;
    assert!(snap.contains("count=4"), "{snap}");
    seen.push(snap);

    let at = Utc.with_ymd_and_hms(2024, 5, 1, 10, 11, 12).unwrap();
    let precise = Watermark::new("ns").with_at(at + chrono::TimeDelta::nanoseconds(1_499));
    let load = sink.begin_load(&def).await.unwrap();
    load.commit(precise).await.unwrap();
    let stored = sink.watermark(&t).await.unwrap().unwrap();
    assert_eq!(
        stored.at,
        Some(at + chrono::TimeDelta::microseconds(1)),
        "microsecond precision"
    );

    let mut load = sink.begin_load(&def).await.unwrap();
    assert!(load.evolution().is_unchanged());
    let mut rows = batch(
        3,
        &[
            &[Some("2"), Some("Brian 2"), Some("true")],
            &[Some("5"), Some("Eve"), None],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    let mut keys = batch(1, &[&[Some("1")], &[Some("999")]]);
    load.delete(&mut keys).await.unwrap();
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 10, 11, 12).unwrap();
    let wm = Watermark::new("w2")
        .with_at(at)
        .with_schema_version(2)
        .with_details(serde_json::json!({"job": "j-2", "objects": 3}));
    let summary = load.commit(wm.clone()).await.unwrap();
    assert_eq!(summary.deleted_rows, 1);
    assert_eq!(sink.watermark(&t).await.unwrap(), Some(wm));
    let rows = sink.read_rows(&t).await.unwrap();
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Int(2),
                Value::Text("Brian 2".into()),
                Value::Bool(true)
            ],
            vec![Value::Int(3), Value::Null, Value::Null],
            vec![
                Value::Int(4),
                Value::Text("Dora (last wins)".into()),
                Value::Bool(false)
            ],
            vec![Value::Int(5), Value::Text("Eve".into()), Value::Null],
        ]
    );
    seen.push(snapshot(sink, &t).await);

    let listed = sink.list_tables().await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|s| s.table == t).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].row_count, 4);
    seen
}

async fn composite_keys(sink: &mut Sink, ns: &str) -> Observed {
    let def = TableDef::new(
        ns,
        "enrollments",
        vec![
            Column::new("OrgUnitId", SqlType::Int32, false),
            Column::new("UserId", SqlType::Int32, false),
            Column::new("RoleName", SqlType::Varchar(20), true),
        ],
        ["OrgUnitId", "UserId"],
    );
    let t = def.table_name();
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(
        3,
        &[
            &[Some("1"), Some("1"), Some("Student")],
            &[Some("1"), Some("2"), Some("Student")],
            &[Some("2"), Some("1"), Some("Instructor")],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("full-1")).await.unwrap();

    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(3, &[&[Some("1"), Some("2"), Some("TA")]]);
    load.upsert(&mut rows).await.unwrap();
    let mut keys = batch(2, &[&[Some("2"), Some("1")], &[Some("1"), Some("3")]]);
    load.delete(&mut keys).await.unwrap();
    // A key batch must have one cell per key column.
    let mut wrong = batch(1, &[&[Some("1")]]);
    assert!(matches!(
        load.delete(&mut wrong).await,
        Err(Error::BatchShape { .. })
    ));
    drop(load);
    assert_eq!(
        sink.watermark(&t).await.unwrap(),
        Some(Watermark::new("full-1"))
    );

    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(3, &[&[Some("1"), Some("2"), Some("TA")]]);
    load.upsert(&mut rows).await.unwrap();
    let mut keys = batch(2, &[&[Some("2"), Some("1")], &[Some("1"), Some("3")]]);
    load.delete(&mut keys).await.unwrap();
    load.commit(Watermark::new("diff-1")).await.unwrap();
    let rows = sink.read_rows(&t).await.unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Int(1), Value::Int(1), Value::Text("Student".into())],
            vec![Value::Int(1), Value::Int(2), Value::Text("TA".into())],
        ]
    );
    vec![snapshot(sink, &t).await]
}

async fn evolution(sink: &mut Sink, ns: &str) -> Observed {
    let state_v1 = SqlType::enumeration("courses__state", ["active"]);
    let v1 = TableDef::new(
        ns,
        "courses",
        vec![
            Column::new("id", SqlType::Int32, false),
            Column::new("name", SqlType::Varchar(10), false),
            Column::new("score", SqlType::Float32, true),
            Column::new("state", state_v1, false),
            Column::new("legacy", SqlType::Text, false),
            Column::new("level", SqlType::enumeration("courses__level", ["a"]), true),
        ],
        ["id"],
    );
    let t = v1.table_name();
    let mut load = sink.begin_load(&v1).await.unwrap();
    let row: [Option<&str>; 6] = [
        Some("1"),
        Some("Maths"),
        Some("0.1"),
        Some("active"),
        Some("old"),
        Some("a"),
    ];
    let mut rows = batch(6, &[&row]);
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("v1")).await.unwrap();

    let state_v2 = SqlType::enumeration("courses__state", ["active", "deleted"]);
    let v2 = TableDef::new(
        ns,
        "courses",
        vec![
            Column::new("id", SqlType::Int64, false),
            Column::new("name", SqlType::Text, false),
            Column::new("score", SqlType::Float64, true),
            Column::new("state", state_v2, false),
            Column::new("credits", SqlType::Int16, true),
            Column::new("level", SqlType::Text, true),
            Column::new(
                "kind",
                SqlType::enumeration("courses__kind", ["x", "y"]),
                true,
            ),
        ],
        ["id"],
    );
    let mut load = sink.begin_load(&v2).await.unwrap();
    let report = load.evolution().clone();
    assert_eq!(report.added_columns, vec!["credits", "kind"]);
    assert_eq!(report.kept_columns, vec!["legacy"]);
    let added_values = vec![("state".to_string(), vec!["deleted".to_string()])];
    assert_eq!(report.enum_values_added, added_values);
    let widened: Vec<&str> = report
        .widened_columns
        .iter()
        .map(|(c, _, _)| c.as_str())
        .collect();
    assert_eq!(widened, vec!["id", "name", "score", "level"]);
    let row: [Option<&str>; 7] = [
        Some("3000000000"),
        Some("A name longer than ten"),
        Some("0.1"),
        Some("deleted"),
        Some("5"),
        Some("no longer an enum"),
        Some("y"),
    ];
    let mut rows = batch(7, &[&row]);
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("v2")).await.unwrap();
    let rows = sink.read_rows(&t).await.unwrap();
    assert_eq!(rows.len(), 2);
    // The kept column keeps its data and is NULL for the new row.
    let status = sink.table_status(&t).await.unwrap().unwrap();
    let legacy = status.definition.column_index("legacy").unwrap();
    assert_eq!(rows[0][legacy], Value::Text("old".into()));
    assert_eq!(rows[1][legacy], Value::Null);

    // Loading with the old definition again changes nothing and still works.
    let mut load = sink.begin_load(&v1).await.unwrap();
    assert!(load.evolution().is_unchanged(), "{:?}", load.evolution());
    let row: [Option<&str>; 6] = [
        Some("2"),
        Some("Art"),
        None,
        Some("active"),
        Some("x"),
        Some("a"),
    ];
    let mut rows = batch(6, &[&row]);
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("v1-again")).await.unwrap();
    let before = snapshot(sink, &t).await;

    // The added enum column takes only its values.
    let refused = {
        let mut load = sink.begin_load(&v2).await.unwrap();
        let row: [Option<&str>; 7] = [
            Some("9"),
            Some("n"),
            None,
            Some("active"),
            None,
            None,
            Some("z"),
        ];
        let mut rows = batch(7, &[&row]);
        match load.upsert(&mut rows).await {
            Err(e) => Err(e),
            Ok(()) => load.commit(Watermark::new("bad")).await.map(|_| ()),
        }
    };
    assert!(refused.is_err());
    assert_eq!(snapshot(sink, &t).await, before);

    // An impossible change is refused and leaves everything as it was.
    let mut v3 = v2.clone();
    v3.columns[2] = Column::new("score", SqlType::Timestamp, true);
    let err = sink.begin_load(&v3).await.unwrap_err();
    assert!(matches!(err, Error::IncompatibleChange { .. }), "{err}");
    let mut v4 = v2.clone();
    v4.primary_key = vec!["id".into(), "name".into()];
    let err = sink.ensure_table(&v4).await.unwrap_err();
    assert!(matches!(err, Error::PrimaryKeyChanged { .. }), "{err}");
    assert_eq!(snapshot(sink, &t).await, before);
    vec![before]
}

async fn watermark_atomicity(sink: &mut Sink, ns: &str) -> Observed {
    let def = users(ns);
    let t = def.table_name();
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(
        3,
        &[
            &[Some("1"), Some("Ada"), Some("true")],
            &[Some("2"), Some("Bob"), None],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("good")).await.unwrap();
    let before = snapshot(sink, &t).await;

    // Fault after 2 batches: the third batch fails, nothing lands.
    sink.inject_fault(Fault::FailAfterBatches(2));
    let mut wider = def.clone();
    wider
        .columns
        .push(Column::new("extra", SqlType::Text, true));
    let mut load = sink.begin_load(&wider).await.unwrap();
    assert_eq!(load.evolution().added_columns, vec!["extra"]);
    let mut rows = batch(4, &[&[Some("1"), Some("changed"), None, Some("e")]]);
    load.upsert(&mut rows).await.unwrap();
    let mut keys = batch(1, &[&[Some("2")]]);
    load.delete(&mut keys).await.unwrap();
    let mut rows = batch(4, &[&[Some("9"), Some("new"), None, None]]);
    let err = load.upsert(&mut rows).await.unwrap_err();
    assert!(
        matches!(err, Error::InjectedFailure { after_batches: 2 }),
        "{err}"
    );
    assert!(load.commit(Watermark::new("bad")).await.is_err());
    assert_eq!(
        snapshot(sink, &t).await,
        before,
        "failed load must leave no trace"
    );

    // Fault when the load has exactly k batches: the commit fails.
    sink.inject_fault(Fault::FailAfterBatches(1));
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(3, &[&[Some("1"), Some("changed"), None]]);
    load.upsert(&mut rows).await.unwrap();
    assert!(matches!(
        load.commit(Watermark::new("bad")).await,
        Err(Error::InjectedFailure { .. })
    ));
    assert_eq!(snapshot(sink, &t).await, before);

    // A bad value in a later batch rolls back the earlier ones too.
    let outcome = {
        let mut load = sink.begin_load(&def).await.unwrap();
        let mut rows = batch(3, &[&[Some("1"), Some("changed"), None]]);
        load.upsert(&mut rows).await.unwrap();
        let mut rows = batch(3, &[&[Some("not a number"), Some("x"), None]]);
        match load.upsert(&mut rows).await {
            Err(e) => Err(e),
            Ok(()) => load.commit(Watermark::new("bad")).await.map(|_| ()),
        }
    };
    assert!(outcome.is_err());
    assert_eq!(snapshot(sink, &t).await, before);

    // A load dropped without commit changes nothing, and the sink stays usable.
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(3, &[&[Some("7"), Some("dropped"), None]]);
    load.upsert(&mut rows).await.unwrap();
    drop(load);
    assert_eq!(snapshot(sink, &t).await, before);
    let load = sink.begin_load(&def).await.unwrap();
    load.rollback().await.unwrap();
    assert_eq!(snapshot(sink, &t).await, before);
    vec![before]
}

async fn bad_values_are_refused(sink: &mut Sink, ns: &str) -> Observed {
    let def = TableDef::new(
        ns,
        "typed",
        vec![
            Column::new("id", SqlType::Int16, false),
            Column::new("flag", SqlType::Bool, false),
            Column::new("code", SqlType::Varchar(3), true),
            Column::new(
                "state",
                SqlType::enumeration("typed__state", ["on", "off"]),
                true,
            ),
            Column::new("doc", SqlType::Json, true),
            Column::new("at", SqlType::Timestamp, true),
            Column::new("uid", SqlType::Uuid, true),
        ],
        ["id"],
    );
    let t = def.table_name();
    sink.ensure_table(&def).await.unwrap();
    let ok: [Option<&str>; 7] = [
        Some("1"),
        Some("true"),
        Some("abc"),
        Some("on"),
        Some("{}"),
        None,
        None,
    ];
    let mut cases: Vec<[Option<&str>; 7]> = Vec::new();
    for (col, bad) in [
        (0, Some("40000")),
        (0, None),
        (1, Some("perhaps")),
        (1, None),
        (2, Some("abcd")),
        (3, Some("maybe")),
        (4, Some("{not json")),
        (5, Some("yesterday")),
        (6, Some("not-a-uuid")),
        (2, Some("nul\0byte")),
    ] {
        let mut row = ok;
        row[col] = bad;
        cases.push(row);
    }
    let mut observed = Vec::new();
    for row in cases {
        let mut load = sink.begin_load(&def).await.unwrap();
        let mut rows = batch(7, &[&row]);
        let r = match load.upsert(&mut rows).await {
            Err(e) => Err(e),
            Ok(()) => load.commit(Watermark::new("bad")).await.map(|_| ()),
        };
        assert!(r.is_err(), "{row:?} was accepted");
        observed.push(format!("{row:?} refused"));
    }
    assert!(sink.read_rows(&t).await.unwrap().is_empty());
    assert_eq!(sink.watermark(&t).await.unwrap(), None);
    observed
}

async fn replace_swaps_in_one_transaction(sink: &mut Sink, ns: &str) -> Observed {
    let def = users(ns);
    let t = def.table_name();
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(
        3,
        &[
            &[Some("1"), Some("old"), None],
            &[Some("2"), Some("old"), None],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("old")).await.unwrap();
    let before = snapshot(sink, &t).await;

    let reader = sink.reopen().await.unwrap();
    // The new definition changes the key and a type: impossible as an
    // evolution, fine as a replacement.
    let new_def = TableDef::new(
        ns,
        "users",
        vec![
            Column::new("id", SqlType::Int64, false),
            Column::new("name", SqlType::Text, false),
            Column::new("active", SqlType::Text, true),
        ],
        ["id", "name"],
    );
    let mut load = sink.begin_replace(&new_def).await.unwrap();
    let mut rows = batch(3, &[&[Some("3"), Some("new"), Some("yes")]]);
    load.upsert(&mut rows).await.unwrap();
    // Readers still see the old table while the replacement is loading.
    assert_eq!(snapshot(&reader, &t).await, before);
    load.commit(Watermark::new("new")).await.unwrap();
    let after = snapshot(&reader, &t).await;
    assert_eq!(
        reader.read_rows(&t).await.unwrap(),
        vec![vec![
            Value::Int(3),
            Value::Text("new".into()),
            Value::Text("yes".into())
        ]]
    );
    assert_eq!(
        reader.watermark(&t).await.unwrap(),
        Some(Watermark::new("new"))
    );

    // Replacing again works too (constraint and index names do not clash).
    let mut load = sink.begin_replace(&new_def).await.unwrap();
    let mut rows = batch(3, &[&[Some("3"), Some("new"), Some("yes")]]);
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("new")).await.unwrap();
    assert_eq!(snapshot(sink, &t).await, after);

    // A failed replacement leaves the current table alone.
    sink.inject_fault(Fault::FailAfterBatches(0));
    let mut load = sink.begin_replace(&def).await.unwrap();
    let mut rows = batch(3, &[&[Some("8"), None, None]]);
    assert!(load.upsert(&mut rows).await.is_err());
    drop(load);
    assert_eq!(snapshot(sink, &t).await, after);
    drop(reader);
    vec![before, after]
}

async fn hostile_identifiers(sink: &mut Sink, ns: &str) -> Observed {
    let schema = format!("{ns} \"quoted\"; DROP");
    let def = TableDef::new(
        schema,
        "t\"; DROP TABLE x; --",
        vec![
            Column::new("id \"key\"", SqlType::Int64, false),
            Column::new("a b;c", SqlType::Text, true),
            Column::new("it's", SqlType::enumeration("e", ["o'k", "\"q\""]), true),
            Column::new("Ünïcödé 列", SqlType::Int32, true),
        ],
        ["id \"key\""],
    );
    let t = def.table_name();
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = batch(
        4,
        &[
            &[Some("1"), Some("x"), Some("o'k"), Some("7")],
            &[Some("2"), None, Some("\"q\""), None],
        ],
    );
    load.upsert(&mut rows).await.unwrap();
    let mut keys = batch(1, &[&[Some("1")]]);
    load.delete(&mut keys).await.unwrap();
    load.commit(Watermark::new("h")).await.unwrap();
    let seen = snapshot(sink, &t).await;
    assert!(seen.contains("count=1"), "{seen}");

    for bad in ["", "nul\0", &"x".repeat(64)] {
        let mut d = def.clone();
        d.columns[1].name = bad.to_string();
        assert!(matches!(
            sink.begin_load(&d).await,
            Err(Error::InvalidIdentifier { .. })
        ));
        let mut d = def.clone();
        d.name = bad.to_string();
        assert!(matches!(
            sink.ensure_table(&d).await,
            Err(Error::InvalidIdentifier { .. })
        ));
    }
    assert!(sink.drop_table(&t).await.unwrap());
    assert!(!sink.drop_table(&t).await.unwrap());
    assert!(sink.table_status(&t).await.unwrap().is_none());
    assert!(matches!(
        sink.read_rows(&t).await,
        Err(Error::UnknownTable { .. })
    ));
    vec![seen]
}

async fn text_and_json_fidelity(sink: &mut Sink, ns: &str) -> Observed {
    let def = TableDef::new(
        ns,
        "texts",
        vec![
            Column::new("id", SqlType::Int32, false),
            Column::new("body", SqlType::Text, true),
            Column::new("doc", SqlType::Json, true),
            Column::new("at", SqlType::Timestamp, true),
            Column::new("day", SqlType::Date, true),
            Column::new("clock", SqlType::Time, true),
            Column::new("uid", SqlType::Uuid, true),
            Column::new(
                "amount",
                SqlType::Decimal {
                    precision: Some(19),
                    scale: 9,
                },
                true,
            ),
            Column::new("ratio", SqlType::Float64, true),
        ],
        ["id"],
    );
    let t = def.table_name();
    let texts = [
        "",
        "plain",
        "tab\there",
        "new\nline\r\nand CR",
        "back\\slash \\N \\t literal",
        "\\",
        "unicode: café 日本語 🎉 e\u{301}",
        "quotes ' \" and ; semicolons",
        "NULL",
        "\u{7f}\u{1}control",
    ];
    let docs = [
        r#"{"a": 1, "b": [true, null, "x\ny"], "c": {"d": "é"}}"#,
        r#""just a string with \t tab""#,
        "[1, 2.5, -3]",
        "null",
        r#"{"s": "back\\slash", "u": "\u00e9\ud83c\udf89"}"#,
    ];
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = RowBatch::new(9);
    let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
    for (i, text) in texts.iter().enumerate() {
        rows.push_row([
            Some(ids[i].as_str()),
            Some(*text),
            docs.get(i).copied(),
            Some(
                [
                    "2024-05-01T10:11:12.345Z",
                    "2024-05-01 12:11:12+02:00",
                    "2024-05-01 10:11:12.1234567",
                ][i % 3],
            ),
            Some("2024-02-29"),
            Some(["10:11:12Z", "23:59:59.5"][i % 2]),
            Some("936DA01F-9ABD-4D9D-80C7-02AF85C822A8"),
            Some(["12.500000000", "-0.000000001", "1234567890.123456789"][i % 3]),
            Some(["0.1", "-1e300", "3"][i % 3]),
        ])
        .unwrap();
    }
    rows.push_row([Some("100"), None, None, None, None, None, None, None, None])
        .unwrap();
    load.upsert(&mut rows).await.unwrap();
    load.commit(Watermark::new("t")).await.unwrap();
    let back = sink.read_rows(&t).await.unwrap();
    assert_eq!(back.len(), texts.len() + 1);
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(back[i][1], Value::Text((*text).to_string()), "text {i}");
        if let Some(doc) = docs.get(i) {
            let want: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(back[i][2], Value::Json(want), "doc {i}");
        }
    }
    assert_eq!(
        back[texts.len()][1..],
        vec![Value::Null; 8][..],
        "NULLs stay NULL"
    );
    assert_eq!(
        back[0][1],
        Value::Text(String::new()),
        "empty string is not NULL"
    );
    vec![snapshot(sink, &t).await]
}

async fn batches_apply_in_order(sink: &mut Sink, ns: &str) -> Observed {
    let def = users(ns);
    let t = def.table_name();
    let mut load = sink.begin_load(&def).await.unwrap();
    let mut rows = RowBatch::new(3);
    let mut keys = RowBatch::new(1);
    let names: Vec<String> = (0..2000).map(|i| format!("name {i}")).collect();
    let ids: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    for round in 0..5usize {
        // Each round rewrites 0..1000+round*200 (conflicting with earlier
        // rounds, and twice within the batch), then deletes every 7th key.
        for i in 0..(1000 + round * 200) {
            rows.push_row([Some(ids[i].as_str()), Some("stale"), None])
                .unwrap();
            rows.push_row([
                Some(ids[i].as_str()),
                Some(names[(i + round) % 2000].as_str()),
                Some("t"),
            ])
            .unwrap();
        }
        load.upsert(&mut rows).await.unwrap();
        for i in (round..1000).step_by(7) {
            keys.push_row([Some(ids[i].as_str())]).unwrap();
        }
        load.delete(&mut keys).await.unwrap();
    }
    // Finally re-add one deleted key: order of batches matters.
    rows.push_row([Some("4"), Some("back"), None]).unwrap();
    load.upsert(&mut rows).await.unwrap();
    let summary = load.commit(Watermark::new("rounds")).await.unwrap();
    assert_eq!(summary.batches, 11);
    let back = sink.read_rows(&t).await.unwrap();
    let deleted_in_last_round = (4..1000).step_by(7).count();
    assert_eq!(back.len(), 1800 - deleted_in_last_round + 1);
    assert!(back.contains(&vec![
        Value::Int(4),
        Value::Text("back".into()),
        Value::Null
    ]));
    assert!(back.contains(&vec![
        Value::Int(1799),
        Value::Text("name 1803".into()),
        Value::Bool(true)
    ]));
    vec![snapshot(sink, &t).await]
}

/// The observer sees each step of a load in order, nothing of a load that
/// did not commit after its last accepted batch, and nothing once removed.
async fn observer_sees_each_step(sink: &mut Sink, ns: &str) -> Observed {
    use sql_sink::LoadEvent;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    sink.set_observer(Some(Arc::new(move |e: &LoadEvent<'_>| {
        let line = match e {
            LoadEvent::Started {
                table,
                replace,
                evolution,
            } => format!(
                "started {table} replace={replace} created={} added={:?}",
                evolution.created, evolution.added_columns
            ),
            LoadEvent::BatchWritten {
                table,
                kind,
                rows,
                batches,
            } => format!("batch {table} {kind:?} rows={rows} batches={batches}"),
            LoadEvent::Committing { table, watermark } => {
                format!("committing {table} {}", watermark.value)
            }
            LoadEvent::Committed {
                table,
                watermark,
                summary,
            } => format!(
                "committed {table} {} upserted={} deleted={}",
                watermark.value, summary.upserted_rows, summary.deleted_rows
            ),
            other => format!("{other:?}"),
        };
        log.lock().unwrap().push(line);
    })));
    let def = users(ns);
    let t = def.table_name();
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    let mut load = sink.begin_load(&def).await.unwrap();
    load.upsert(&mut batch(
        3,
        &[&[Some("1"), Some("a"), None], &[Some("2"), None, None]],
    ))
    .await
    .unwrap();
    load.upsert(&mut RowBatch::new(3)).await.unwrap(); // empty: no event
    load.delete(&mut batch(1, &[&[Some("2")], &[Some("9")]]))
        .await
        .unwrap();
    assert_eq!(
        take(),
        [
            format!("started {t} replace=false created=true added=[]"),
            format!("batch {t} Upsert rows=2 batches=1"),
            format!("batch {t} Delete rows=2 batches=2"),
        ],
        "before the commit, the events stop at the last accepted batch"
    );
    load.commit(Watermark::new("w1")).await.unwrap();
    let committed = take();
    assert_eq!(
        committed,
        [
            format!("committing {t} w1"),
            format!("committed {t} w1 upserted=2 deleted=1"),
        ]
    );
    let mut observed = committed;

    // A structure change is reported at the start; a dropped load ends there.
    let mut wider = def.clone();
    wider
        .columns
        .push(Column::new("email", SqlType::Text, true));
    let mut load = sink.begin_load(&wider).await.unwrap();
    load.upsert(&mut batch(4, &[&[Some("3"), None, None, Some("x@y")]]))
        .await
        .unwrap();
    drop(load);
    let dropped = take();
    assert_eq!(
        dropped,
        [
            format!("started {t} replace=false created=false added=[\"email\"]"),
            format!("batch {t} Upsert rows=1 batches=1"),
        ]
    );
    observed.extend(dropped);

    // A failed batch is not reported; neither is a commit that cannot happen.
    let mut other = sink.reopen().await.unwrap(); // shares the observer
    other.inject_fault(Fault::FailAfterBatches(1));
    let mut load = other.begin_replace(&def).await.unwrap();
    load.upsert(&mut batch(3, &[&[Some("5"), None, None]]))
        .await
        .unwrap();
    assert!(
        load.upsert(&mut batch(3, &[&[Some("6"), None, None]]))
            .await
            .is_err()
    );
    assert!(load.commit(Watermark::new("never")).await.is_err());
    let failed = take();
    assert_eq!(
        failed,
        [
            format!("started {t} replace=true created=true added=[]"),
            format!("batch {t} Upsert rows=1 batches=1"),
        ]
    );
    observed.extend(failed);
    drop(other);

    sink.set_observer(None);
    let mut load = sink.begin_load(&def).await.unwrap();
    load.upsert(&mut batch(3, &[&[Some("7"), None, None]]))
        .await
        .unwrap();
    load.commit(Watermark::new("w2")).await.unwrap();
    assert!(take().is_empty(), "a removed observer hears nothing");
    observed.push(snapshot(sink, &t).await);
    observed
}

/// Every scenario, by name, for the cross-backend run.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
type Scenario = for<'a> fn(&'a mut Sink, &'a str) -> futures::future::BoxFuture<'a, Observed>;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// All scenarios with their names.
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        fn all() -> Vec<(&'static str, Scenario)> {
            vec![$((stringify!($name), |s, ns| Box::pin($name(s, ns))),)*]
        }

        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let mut sink = sql_sink::Sink::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
                        .await
                        .unwrap();
                    super::$name(&mut sink, "ns").await;
                }
            )*
        }
    };
}

scenarios!(
    create_upsert_delete,
    composite_keys,
    evolution,
    watermark_atomicity,
    bad_values_are_refused,
    replace_swaps_in_one_transaction,
    hostile_identifiers,
    text_and_json_fidelity,
    batches_apply_in_order,
    observer_sees_each_step,
);

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_observes_what_sqlite_observes() {
    let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await else {
        return;
    };
    for (name, scenario) in all() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Sink::open_sqlite(dir.path().join("t.db")).await.unwrap();
        let expected = scenario(&mut lite, "ns").await;
        let url = pg.fresh_database().await.unwrap();
        let mut sink = Sink::open(&url).await.unwrap();
        let got = scenario(&mut sink, "ns").await;
        assert_eq!(
            got, expected,
            "scenario {name}: PostgreSQL and SQLite disagree"
        );
    }
}
