//! Turning an error response into an [`ApiError`].

use std::time::SystemTime;

use reqwest::header::HeaderMap;

use crate::error::{ApiError, redact_url, snippet};

/// Headers servers use for a request id, most common first.
const REQUEST_ID_HEADERS: &[&str] = &[
    "x-request-id",
    "request-id",
    "x-amz-request-id",
    "x-amzn-requestid",
    "x-correlation-id",
];

/// The largest body snippet kept in an [`ApiError`].
const SNIPPET_BYTES: usize = 2048;

impl ApiError {
    /// Builds the error for a response: the message is taken from common JSON
    /// shapes (`message`, `error.message`, `error_description`, `Message`,
    /// `error`, `errors[0].message`, `detail`), the request id from the usual
    /// headers, and `url` is stored without its query string.
    pub fn from_response_parts(
        method: &str,
        url: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        ApiError {
            method: method.to_string(),
            url: redact_url(url),
            status,
            message: message_from_body(body),
            request_id: request_id(headers),
            body_snippet: snippet(body, SNIPPET_BYTES),
            retry_after: crate::retry::parse_retry_after(headers, SystemTime::now()),
        }
    }
}

/// The server's request id, if a known header carries one.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    REQUEST_ID_HEADERS
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The human message in a JSON error body, if it has one of the common shapes.
pub(crate) fn message_from_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    text(value.get("message"))
        .or_else(|| text(value.get("error").and_then(|e| e.get("message"))))
        .or_else(|| {
            let description = text(value.get("error_description"))?;
            Some(match text(value.get("error")) {
                Some(code) => format!("{code}: {description}"),
                None => description,
            })
        })
        .or_else(|| text(value.get("Message")))
        .or_else(|| text(value.get("error")))
        .or_else(|| {
            let first = value
                .get("errors")
                .or_else(|| value.get("Errors"))?
                .get(0)?;
            text(first.get("message")).or_else(|| text(first.get("Message")))
        })
        .or_else(|| text(value.get("detail")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_message_shapes() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"message":"a"}"#, Some("a")),
            (r#"{"error":{"type":"X","message":"b"}}"#, Some("b")),
            (
                r#"{"error":"invalid_grant","error_description":"c"}"#,
                Some("invalid_grant: c"),
            ),
            (r#"{"Message":"d"}"#, Some("d")),
            (r#"{"error":"e"}"#, Some("e")),
            (r#"{"errors":[{"message":"f"}]}"#, Some("f")),
            (r#"{"detail":"g"}"#, Some("g")),
            (r#"{"other":1}"#, None),
            ("<html>oops</html>", None),
            (r#"[1,2]"#, None),
        ];
        for (body, want) in cases {
            assert_eq!(
                message_from_body(body.as_bytes()).as_deref(),
                *want,
                "{body}"
            );
        }
    }

    #[test]
    fn api_error_display_has_status_message_and_request_id_but_no_query() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "req-42".parse().unwrap());
        let e = ApiError::from_response_parts(
            "GET",
            "https://h/x?sig=secret",
            404,
            &headers,
            br#"{"message":"no such table"}"#,
        );
        let shown = e.to_string();
        assert_eq!(
            shown,
            "GET https://h/x returned HTTP 404: no such table (request id req-42)"
        );
    }
}
