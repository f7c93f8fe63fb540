//! The plain-text notification answer of Alipay (A.4), Epay (G.3) and the sandbox: HTTP 200
//! `success` stops the resends, HTTP 400 `fail` asks for another try.

use crate::{Ack, AckResponse};

/// `text/plain; charset=utf-8`: the content type of every plain-text ack.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Success → 200 `success`; Failure → 400 `fail`.
pub fn plain_text_ack(ack: Ack) -> AckResponse {
    let (status, body) = match ack {
        Ack::Success => (200, "success"),
        Ack::Failure => (400, "fail"),
    };
    AckResponse {
        status,
        content_type: TEXT_PLAIN,
        body: body.to_owned(),
    }
}

/// Asserts `channel` answers notifications with exactly the plain-text bytes above.
#[cfg(test)]
pub(crate) fn assert_plain_text_ack(channel: &dyn crate::PaymentChannel) {
    assert_eq!(
        channel.ack(Ack::Success),
        AckResponse {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: "success".into()
        }
    );
    assert_eq!(
        channel.ack(Ack::Failure),
        AckResponse {
            status: 400,
            content_type: "text/plain; charset=utf-8",
            body: "fail".into()
        }
    );
}
