//! Sending a request to a gateway and reading its reply, the same way for every protocol:
//! transport errors never carry the URL (Epay v1 URLs hold the merchant key), and a reply
//! larger than [`MAX_RESPONSE_BYTES`] is refused instead of read into memory.

use crate::PayError;

/// Largest gateway reply read; real replies are a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A gateway's reply: status, headers (WeChat Pay signs them) and the raw body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

fn transport(e: reqwest::Error) -> PayError {
    PayError::Transport(e.without_url().to_string())
}

pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<Reply, PayError> {
    send_capped(req, MAX_RESPONSE_BYTES).await
}

/// [`send`] reading at most `max` bytes (bill files are larger than API answers).
pub(crate) async fn send_capped(
    req: reqwest::RequestBuilder,
    max: usize,
) -> Result<Reply, PayError> {
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(PayError::Malformed("gateway response too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > max {
            return Err(PayError::Malformed("gateway response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}
