//! Cross-format tests: the same records written as JSON Lines, TSV and CSV,
//! condensed and expanded, decode to identical `Record`s.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::model::{Action, VersionedSchema};

fn schema() -> Arc<TableSchema> {
    let doc: VersionedSchema = serde_json::from_value(json!({"version": 1, "schema": {"type": "object", "properties": {
        "meta": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}, "action": {"type": "string"}}},
        "key": {"type": "object", "properties": {"id": {"type": "integer", "format": "int64"}}},
        "value": {"type": "object", "properties": {
            "name": {"type": "string"},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "settings": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}}
        }}
    }}}))
    .unwrap();
    Arc::new(TableSchema::from_versioned(&doc))
}

const NASTY: &str = "tab\there\nnew\rline \\N back\\slash \"quoted\", comma NULL μ";

/// The expected records, as JSON Lines objects.
fn expected() -> Vec<Value> {
    vec![
        json!({"meta":{"ts":"2024-05-01T10:11:12.345Z","action":"U"},"key":{"id":1},
               "value":{"name":NASTY,"score":1.5,"ok":true,"settings":{"a":1,"b":"multi\nline\t\\"},"tags":["x","y,z"]}}),
        json!({"meta":{"ts":"2024-05-01T10:11:13Z","action":"U"},"key":{"id":2},
               "value":{"name":"NULL","ok":false,"settings":{"b":""},"tags":[]}}),
        json!({"meta":{"ts":"2024-05-01T10:11:14Z","action":"U"},"key":{"id":3},"value":{"name":""}}),
        json!({"meta":{"ts":"2024-05-01T10:12:00Z","action":"D"},"key":{"id":4}}),
    ]
}

const COLS_CONDENSED: [&str; 8] = [
    "meta.ts",
    "meta.action",
    "key.id",
    "value.name",
    "value.score",
    "value.ok",
    "value.settings",
    "value.tags",
];
const COLS_EXPANDED: [&str; 9] = [
    "meta.ts",
    "meta.action",
    "key.id",
    "value.name",
    "value.score",
    "value.ok",
    "value.settings.a",
    "value.settings.b",
    "value.tags",
];

/// The cells of a record for a header, `None` for NULL, in the service's
/// text forms (numbers and booleans unquoted, JSON compact).
fn cells(rec: &Value, cols: &[&str]) -> Vec<Option<String>> {
    cols.iter()
        .map(|label| {
            let mut v = rec;
            for part in label.split('.') {
                v = match v.get(part) {
                    Some(x) => x,
                    None => return None,
                };
            }
            match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        })
        .collect()
}

fn tsv(cols: &[&str]) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    let mut out = cols.join("\t") + "\n";
    for rec in expected() {
        let line: Vec<String> = cells(&rec, cols)
            .into_iter()
            .map(|c| c.map_or("\\N".to_string(), |s| esc(&s)))
            .collect();
        out += &(line.join("\t") + "\n");
    }
    out
}

fn csv(cols: &[&str]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = cols.join(",") + "\r\n";
    for rec in expected() {
        let line: Vec<String> = cells(&rec, cols)
            .into_iter()
            .map(|c| match c {
                None => "NULL".to_string(),
                Some(s)
                    if s.is_empty() || s == "NULL" || s.contains([',', '"', '\n', '\r', '\t']) =>
                {
                    quote(&s)
                }
                Some(s) => s,
            })
            .collect();
        out += &(line.join(",") + "\r\n");
    }
    out
}

async fn decode(data: &str, format: Format) -> Vec<Value> {
    let mut reader = RecordReader::new(data.as_bytes(), format)
        .unwrap()
        .with_schema(schema());
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().await.unwrap() {
        out.push(r.to_json());
    }
    out
}

#[tokio::test]
async fn all_formats_and_modes_decode_to_the_same_records() {
    let jsonl: String = expected().iter().map(|v| v.to_string() + "\n").collect();
    assert_eq!(decode(&jsonl, Format::Jsonl).await, expected());
    assert_eq!(
        decode(&tsv(&COLS_CONDENSED), Format::Tsv).await,
        expected(),
        "tsv condensed"
    );
    assert_eq!(
        decode(&tsv(&COLS_EXPANDED), Format::Tsv).await,
        expected(),
        "tsv expanded"
    );
    assert_eq!(
        decode(&csv(&COLS_CONDENSED), Format::Csv).await,
        expected(),
        "csv condensed"
    );
    assert_eq!(
        decode(&csv(&COLS_EXPANDED), Format::Csv).await,
        expected(),
        "csv expanded"
    );
}

#[tokio::test]
async fn blank_csv_cells_are_null_and_quoted_empty_is_empty() {
    let data = "meta.action,key.id,value.name,value.score\nU,1,\"\",\nD,3,,\n";
    let recs = decode(data, Format::Csv).await;
    assert_eq!(recs[0]["value"], json!({"name": ""}));
    assert_eq!(recs[1], json!({"meta": {"action": "D"}, "key": {"id": 3}}));
}

#[tokio::test]
async fn without_schema_cells_stay_text_and_rows_borrow() {
    let data = "meta.ts\tkey.id\tvalue.n\tother.x\n2024-01-01T00:00:00Z\t7\t\\N\tkept\n";
    let mut reader = RecordReader::new(data.as_bytes(), Format::Tsv).unwrap();
    let row = reader.next_row().await.unwrap().unwrap();
    assert_eq!(row.get(1), Some("7"));
    assert_eq!(row.get(2), None);
    assert_eq!(row.get_by_label("other.x"), Some("kept"));
    assert_eq!(row.columns()[3].section(), None);
    assert_eq!(row.line(), 2);
    let data = "key.id\tvalue.n\n7\tx\n";
    let rec = RecordReader::new(data.as_bytes(), Format::Tsv)
        .unwrap()
        .next_record()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.key.get("id"), Some(&Value::from("7")));
    assert_eq!(rec.meta.action, None);
}

#[tokio::test]
async fn errors_name_the_object_and_line() {
    let bad_int = "key.id\tvalue.name\n1\ta\nx\tb\n";
    let mut reader = RecordReader::new(bad_int.as_bytes(), Format::Tsv)
        .unwrap()
        .with_schema(schema())
        .with_source_name("job/part-1.tsv.gz");
    assert!(reader.next_record().await.unwrap().is_some());
    let err = reader.next_record().await.unwrap_err();
    assert!(
        matches!(&err, DecodeError::InvalidValue { line: 3, column, .. } if column == "key.id"),
        "{err:?}"
    );
    assert!(err.to_string().contains("job/part-1.tsv.gz"), "{err}");

    let short = "key.id\tvalue.name\n1\n";
    let err = RecordReader::new(short.as_bytes(), Format::Tsv)
        .unwrap()
        .next_record()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::CellCount {
                expected: 2,
                found: 1,
                line: 2,
                ..
            }
        ),
        "{err:?}"
    );

    let open_quote = "key.id,value.name\n1,\"never closed\n";
    let err = RecordReader::new(open_quote.as_bytes(), Format::Csv)
        .unwrap()
        .next_record()
        .await
        .unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");

    let long = format!("key.id\n{}\n", "9".repeat(100));
    let err = RecordReader::new(long.as_bytes(), Format::Tsv)
        .unwrap()
        .max_line_len(50)
        .next_record()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::LineTooLong {
                line: 2,
                limit: 50,
                ..
            }
        ),
        "{err:?}"
    );

    let latin1: &[u8] = b"key.id\tvalue.name\n1\t\xe9\n";
    let err = RecordReader::new(latin1, Format::Tsv)
        .unwrap()
        .next_record()
        .await
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::InvalidUtf8 { line: 2, .. }),
        "{err:?}"
    );

    assert!(matches!(
        RecordReader::new(&b""[..], Format::Parquet),
        Err(DecodeError::UnsupportedFormat { .. })
    ));
    let err = RecordReader::new(&b""[..], Format::Tsv)
        .unwrap()
        .next_record()
        .await
        .unwrap_err();
    assert!(matches!(err, DecodeError::MissingHeader { .. }));
}

#[tokio::test]
async fn stream_yields_every_record() {
    use futures::TryStreamExt;
    let data = tsv(&COLS_CONDENSED);
    let stream = RecordReader::new(data.as_bytes(), Format::Tsv)
        .unwrap()
        .with_schema(schema())
        .into_stream();
    let recs: Vec<Record> = stream.try_collect().await.unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[3].meta.action, Some(Action::Delete));
}

/// `data`'s header followed by its body `times` times over.
fn repeated(data: &str, times: usize) -> String {
    let split = data.find('\n').map_or(data.len(), |i| i + 1);
    let (header, body) = data.split_at(split);
    header.to_string() + &body.repeat(times)
}

async fn sequential(data: &str, format: Format) -> Vec<Result<Record, String>> {
    let mut reader = RecordReader::new(data.as_bytes(), format)
        .unwrap()
        .with_schema(schema());
    let mut out = Vec::new();
    loop {
        match reader.next_record().await {
            Ok(Some(r)) => out.push(Ok(r)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e.to_string()));
                return out;
            }
        }
    }
}

async fn parallel(data: &str, format: Format, workers: usize) -> Vec<Result<Record, String>> {
    use futures::StreamExt;
    RecordReader::new(std::io::Cursor::new(data.as_bytes().to_vec()), format)
        .unwrap()
        .with_schema(schema())
        .into_parallel_stream(workers)
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parallel_stream_yields_the_sequential_records_in_order() {
    // 700 copies of the 4 records: several chunks, CSV cells spanning lines
    // at chunk boundaries.
    let jsonl: String = expected().iter().map(|v| v.to_string() + "\n").collect();
    let inputs = [
        (jsonl, Format::Jsonl),
        (tsv(&COLS_CONDENSED), Format::Tsv),
        (tsv(&COLS_EXPANDED), Format::Tsv),
        (csv(&COLS_CONDENSED), Format::Csv),
        (csv(&COLS_EXPANDED), Format::Csv),
    ];
    for (data, format) in inputs {
        let data = if let Format::Jsonl = format {
            data.repeat(700)
        } else {
            repeated(&data, 700)
        };
        let expected = sequential(&data, format.clone()).await;
        assert_eq!(expected.len(), 2800, "{format}");
        assert!(expected.iter().all(Result::is_ok), "{format}");
        for workers in [0, 1, 3] {
            assert_eq!(
                parallel(&data, format.clone(), workers).await,
                expected,
                "{format}, {workers} workers"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parallel_stream_ends_with_the_first_error_as_sequential_decoding_does() {
    use futures::StreamExt;
    let good = repeated(&tsv(&COLS_CONDENSED), 400);
    // A bad integer deep in the object (a typing error), a line over the
    // cap (a reading error), and no header at all.
    let bad_line = format!(
        "2024-05-01T10:11:12Z\tU\tx{}\n",
        "\t\\N".repeat(COLS_CONDENSED.len() - 3)
    );
    let bad_cell = format!("{good}{bad_line}{}", &good[good.find('\n').unwrap() + 1..]);
    let out = parallel(&bad_cell, Format::Tsv, 3).await;
    assert_eq!(out, sequential(&bad_cell, Format::Tsv).await);
    assert_eq!(out.len(), 1601);
    let last = out.last().unwrap().as_ref().unwrap_err();
    assert!(
        last.contains("line 1602") && last.contains("key.id"),
        "{last}"
    );

    let too_long = format!("{good}{}\n{good}", "9".repeat(1000));
    let out: Vec<_> = RecordReader::new(std::io::Cursor::new(too_long.into_bytes()), Format::Tsv)
        .unwrap()
        .max_line_len(999)
        .into_parallel_stream(2)
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
        .await;
    assert_eq!(out.len(), 1601);
    let last = out.last().unwrap().as_ref().unwrap_err();
    assert!(
        last.contains("line 1602 ") && last.contains("longer than"),
        "{last}"
    );

    let out = parallel("", Format::Tsv, 2).await;
    assert!(
        matches!(&out[..], [Err(e)] if e.contains("no header row")),
        "{out:?}"
    );
}
