//! The public entry point of the sign-in refusal parser: what a fuzz target
//! or a caller holding the core's message gets, without an HTTP exchange.

use ldbatch_client::Error;

#[test]
fn a_refusal_message_becomes_an_oauth_error_with_code_and_description() {
    let message = "token endpoint POST https://ld.example/ls/api/oauth2/token returned HTTP 401: \
                   invalid_client: Client authentication failed; check the client id";
    match Error::from_token_refusal(message, Some(401)) {
        Some(Error::OAuth {
            error,
            description,
            status,
        }) => {
            assert_eq!(error.as_deref(), Some("invalid_client"));
            assert_eq!(description.as_deref(), Some("Client authentication failed"));
            assert_eq!(status, Some(401));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_text_is_not_a_refusal_and_odd_text_does_not_panic() {
    assert!(Error::from_token_refusal("connection refused", None).is_none());
    for odd in [
        "",
        "token endpoint ",
        "token endpoint returned HTTP ",
        "token endpoint returned HTTP 400",
        "token endpoint returned HTTP 400: ",
        "token endpoint returned HTTP 400: é: ü; check ",
        "token endpoint returned HTTP 400: ; check ; check ",
        "token endpoint returned HTTP 400: \u{1F600}: \u{0}",
    ] {
        // Whatever the text, the result is an OAuth error or nothing.
        match Error::from_token_refusal(odd, Some(400)) {
            None | Some(Error::OAuth { .. }) => {}
            Some(other) => panic!("{odd:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        Error::from_token_refusal("token endpoint returned HTTP 400: ", Some(400)),
        Some(Error::OAuth {
            error: None,
            description: None,
            ..
        })
    ));
}
