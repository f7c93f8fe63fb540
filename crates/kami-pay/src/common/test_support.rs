//! What the protocol tests share: form encoding, a form-POST notification as gateways send
//! it, and the expected [`PayError::BadSignature`] / [`PayError::Malformed`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{NotifyVerdict, PayError, RawNotification};

/// `application/x-www-form-urlencoded` of `params`.
pub(crate) fn encode(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

/// A POST notification with a form body.
pub(crate) fn form_post(body: impl Into<Vec<u8>>) -> RawNotification {
    RawNotification {
        method: "POST".into(),
        query: String::new(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into(),
    }
}

/// Panics unless `r` is [`PayError::BadSignature`].
pub(crate) fn bad_signature(r: Result<NotifyVerdict, PayError>) {
    assert!(matches!(r, Err(PayError::BadSignature)), "{r:?}");
}

/// The message of a [`PayError::Malformed`]; panics on anything else.
pub(crate) fn malformed(r: Result<NotifyVerdict, PayError>) -> String {
    match r {
        Err(PayError::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}
