//! What stands in front of every console page: the session cookie (HttpOnly, SameSite=Strict,
//! Path=/admin, Secure on https), the per-session form token checked on every POST in
//! constant time, and the browser's own word on where a form came from (`Origin`,
//! `Sec-Fetch-Site`). A refused POST changes nothing.

use aws_lc_rs::digest;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use kami_store::Session;
use subtle::ConstantTimeEq;

use super::{message, see_other};
use crate::http::web::request::Ctx;
use crate::services::console::{self, Client};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "kami_session";
/// The sign-in form's token before there is a session (double submit: cookie and field).
pub const LOGIN_COOKIE: &str = "kami_login";

/// A signed-in console user.
pub struct Admin {
    pub session: Session,
    /// The form token of this session.
    pub csrf: String,
}

/// The form token of a session: derived from the cookie's value (which only the browser and
/// the server hold; the database has only another hash of it), so it needs no storage.
pub fn csrf_for(cookie_value: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"kami console csrf\0");
    ctx.update(cookie_value.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

pub fn same_token(expected: &str, presented: &str) -> bool {
    !expected.is_empty()
        && expected.len() == presented.len()
        && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

pub fn client(ctx: &Ctx) -> Client {
    Client {
        ip: ctx.ip,
        user_agent: ctx.user_agent.clone(),
    }
}

pub fn cookie_value<'a>(ctx: &'a Ctx, name: &str) -> &'a str {
    ctx.cookies.get(name).map_or("", String::as_str)
}

/// The session the cookie names (full or waiting for a code), if live.
pub async fn session(state: &AppState, ctx: &Ctx) -> Result<Option<(Session, String)>, Response> {
    let token = cookie_value(ctx, SESSION_COOKIE);
    match console::session(state, token).await {
        Ok(s) => Ok(s.map(|s| (s, csrf_for(token)))),
        Err(e) => Err(super::failed(state, ctx, None, e)),
    }
}

/// The signed-in user, or a redirect to the sign-in page that comes back here.
pub async fn require(state: &AppState, ctx: &Ctx) -> Result<Admin, Response> {
    match session(state, ctx).await? {
        Some((session, csrf)) if !session.mfa_pending => Ok(Admin { session, csrf }),
        _ => {
            let here = if ctx.query_without_lang.is_empty() {
                ctx.path.clone()
            } else {
                format!("{}?{}", ctx.path, ctx.query_without_lang)
            };
            let next: String =
                url::form_urlencoded::byte_serialize(super::safe_next(&here).as_bytes()).collect();
            Err(see_other(&format!("/admin/login?next={next}")))
        }
    }
}

/// A console POST must come from our own page (`Origin` / `Sec-Fetch-Site`, when the browser
/// sends them) and carry the form token `expected`; otherwise `403` and nothing happens.
pub fn check_post(
    state: &AppState,
    ctx: &Ctx,
    user: Option<&Admin>,
    expected: &str,
    fields: &[(String, String)],
) -> Result<(), Response> {
    if ctx.cross_site || !same_token(expected, super::field(fields, "csrf")) {
        return Err(message(
            state,
            ctx,
            user,
            StatusCode::FORBIDDEN,
            "forbidden",
        ));
    }
    Ok(())
}

/// `Set-Cookie` for a cookie of the console (`max_age` seconds; 0 deletes it).
pub fn set_cookie(state: &AppState, resp: &mut Response, name: &str, value: &str, max_age: i64) {
    let https = state.public_url.starts_with("https://");
    if let Ok(v) = HeaderValue::from_str(&cookie_text(name, value, max_age, https)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The cookie's text: never readable by scripts, never sent cross-site, only to `/admin`, and
/// only over TLS when the shop is served over https.
fn cookie_text(name: &str, value: &str, max_age: i64, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The signed-in user and a POST's form fields, once its origin and form token check out;
/// otherwise the page to answer with.
pub async fn post(
    state: &AppState,
    ctx: &Ctx,
    body: &[u8],
) -> Result<(Admin, Vec<(String, String)>), Response> {
    let fields = super::form_fields(body);
    let admin = require(state, ctx).await?;
    check_post(state, ctx, Some(&admin), &admin.csrf, &fields)?;
    Ok((admin, fields))
}

/// Who acts, for the audit log: `user:NAME` from this address.
pub fn actor(admin: &Admin, ctx: &Ctx) -> kami_store::Actor {
    kami_store::Actor::new(
        format!("user:{}", admin.session.user_name),
        ctx.ip.map(|ip| ip.to_string()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn cookies_are_secure_on_https() {
        let on = super::cookie_text("kami_session", "v", 60, true);
        assert_eq!(
            on,
            "kami_session=v; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        assert!(!super::cookie_text("kami_session", "v", 60, false).contains("Secure"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(super::same_token("abc", "abc"));
        assert!(!super::same_token("abc", "abd"));
        assert!(!super::same_token("abc", "ab"));
        assert!(!super::same_token("", ""), "no token is never a match");
    }
}
