//! Turns fuzz input into a raw notification: the first byte picks GET (query) or POST (body),
//! and a few header values are carved from the front for protocols that sign headers.

use kami_pay::RawNotification;

pub fn raw(data: &[u8], header_names: &[&str]) -> RawNotification {
    let (method, mut rest) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => ("POST", rest),
        Some((_, rest)) => ("GET", rest),
        None => ("POST", data),
    };
    let mut headers = Vec::new();
    for name in header_names {
        // Each header value runs to the next newline.
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        headers.push(((*name).to_owned(), String::from_utf8_lossy(&rest[..end]).into_owned()));
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    let (query, body) = if method == "GET" {
        (String::from_utf8_lossy(rest).into_owned(), Vec::new())
    } else {
        (String::new(), rest.to_vec())
    };
    RawNotification { method: method.to_owned(), query, headers, body }
}
