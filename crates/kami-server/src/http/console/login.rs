//! `/admin/login` (user name and password), `/admin/login/code` (the second factor when the
//! user enrolled one) and `/admin/logout`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use kami_core::SecretToken;
use minijinja::context;
use serde::Deserialize;

use super::guard::{self, Admin, LOGIN_COOKIE, SESSION_COOKIE};
use super::{field, form_fields, render, safe_next, see_other};
use crate::http::web::request::Ctx;
use crate::services::console::{self, SignIn};
use crate::services::ServiceError;
use crate::state::AppState;

type St = State<Arc<AppState>>;

/// The pending sign-in cookie lives as long as the server waits for the code.
const PENDING_COOKIE_SECS: i64 = 5 * 60;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

fn next_param(next: &str) -> String {
    url::form_urlencoded::byte_serialize(safe_next(next).as_bytes()).collect()
}

/// What a refused sign-in shows: the message key, its status and `Retry-After`.
fn refusal(e: ServiceError) -> Result<(StatusCode, &'static str, Option<u64>), ServiceError> {
    match e {
        ServiceError::Invalid {
            code: "account_disabled",
            ..
        } => Ok((StatusCode::FORBIDDEN, "account_disabled", None)),
        ServiceError::Invalid { code, .. } => Ok((
            StatusCode::UNAUTHORIZED,
            match code {
                "code_used" => "code_used",
                "bad_code" => "bad_code",
                _ => "bad_credentials",
            },
            None,
        )),
        ServiceError::Limited {
            code, retry_after, ..
        } => Ok((
            StatusCode::TOO_MANY_REQUESTS,
            if code == "account_locked" {
                "account_locked"
            } else {
                "rate_limited"
            },
            Some(retry_after),
        )),
        other => Err(other),
    }
}

fn with_retry_after(mut resp: Response, secs: Option<u64>) -> Response {
    if let Some(s) = secs {
        resp.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    resp
}

fn login_page(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    token: &str,
    next: &str,
    username: &str,
    error: Option<(&str, u64)>,
) -> Response {
    render(
        state,
        ctx,
        None,
        status,
        "console/login.html",
        "",
        context! {
            csrf_login => guard::csrf_for(token),
            next => safe_next(next),
            username => username,
            error => error.map(|e| e.0),
            minutes => error.map_or(0, |e| e.1.div_ceil(60)),
        },
    )
}

pub async fn form(State(state): St, ctx: Ctx, Query(q): Query<NextQuery>) -> Response {
    if let Ok(Some((s, _))) = guard::session(&state, &ctx).await {
        if !s.mfa_pending {
            return see_other(safe_next(&q.next));
        }
    }
    let existing = guard::cookie_value(&ctx, LOGIN_COOKIE);
    let token = if existing.len() == 43 {
        existing.to_owned()
    } else {
        SecretToken::generate().expose().to_owned()
    };
    let mut resp = login_page(&state, &ctx, StatusCode::OK, &token, &q.next, "", None);
    if existing != token {
        guard::set_cookie(&state, &mut resp, LOGIN_COOKIE, &token, 3600);
    }
    resp
}

pub async fn submit(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let login_token = guard::cookie_value(&ctx, LOGIN_COOKIE).to_owned();
    let expected = if login_token.is_empty() {
        String::new()
    } else {
        guard::csrf_for(&login_token)
    };
    if let Err(resp) = guard::check_post(&state, &ctx, None, &expected, &fields) {
        return resp;
    }
    let (username, next) = (field(&fields, "username"), field(&fields, "next"));
    let password = field(&fields, "password").to_owned();
    match console::sign_in(&state, username, password, &guard::client(&ctx)).await {
        Ok(SignIn::Done(token)) => {
            let mut resp = see_other(safe_next(next));
            let secs = state.config.console.absolute_ms() / 1000;
            guard::set_cookie(&state, &mut resp, SESSION_COOKIE, token.expose(), secs);
            resp
        }
        Ok(SignIn::NeedsCode(token)) => {
            let mut resp = see_other(&format!("/admin/login/code?next={}", next_param(next)));
            guard::set_cookie(
                &state,
                &mut resp,
                SESSION_COOKIE,
                token.expose(),
                PENDING_COOKIE_SECS,
            );
            resp
        }
        Err(e) => match refusal(e) {
            Ok((status, key, retry)) => with_retry_after(
                login_page(
                    &state,
                    &ctx,
                    status,
                    &login_token,
                    next,
                    username,
                    Some((key, retry.unwrap_or(0))),
                ),
                retry,
            ),
            Err(other) => super::failed(&state, &ctx, None, other),
        },
    }
}

fn code_page(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    csrf: &str,
    next: &str,
    error: Option<(&str, u64)>,
) -> Response {
    render(
        state,
        ctx,
        None,
        status,
        "console/code.html",
        "",
        context! {
            csrf_code => csrf,
            next => safe_next(next),
            error => error.map(|e| e.0),
            minutes => error.map_or(0, |e| e.1.div_ceil(60)),
        },
    )
}

pub async fn code_form(State(state): St, ctx: Ctx, Query(q): Query<NextQuery>) -> Response {
    match guard::session(&state, &ctx).await {
        Ok(Some((s, csrf))) if s.mfa_pending => {
            code_page(&state, &ctx, StatusCode::OK, &csrf, &q.next, None)
        }
        Ok(Some(_)) => see_other(safe_next(&q.next)),
        Ok(None) => see_other(&format!("/admin/login?next={}", next_param(&q.next))),
        Err(resp) => resp,
    }
}

pub async fn code_submit(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let next = field(&fields, "next");
    let (pending, csrf) = match guard::session(&state, &ctx).await {
        Ok(Some((s, csrf))) if s.mfa_pending => (s, csrf),
        Ok(_) => return see_other(&format!("/admin/login?next={}", next_param(next))),
        Err(resp) => return resp,
    };
    if let Err(resp) = guard::check_post(&state, &ctx, None, &csrf, &fields) {
        return resp;
    }
    let code = field(&fields, "code");
    match console::second_factor(&state, &pending, code, &guard::client(&ctx)).await {
        Ok(token) => {
            let mut resp = see_other(safe_next(next));
            let secs = state.config.console.absolute_ms() / 1000;
            guard::set_cookie(&state, &mut resp, SESSION_COOKIE, token.expose(), secs);
            resp
        }
        Err(e) => match refusal(e) {
            Ok((status, key, retry)) => with_retry_after(
                code_page(
                    &state,
                    &ctx,
                    status,
                    &csrf,
                    next,
                    Some((key, retry.unwrap_or(0))),
                ),
                retry,
            ),
            Err(other) => super::failed(&state, &ctx, None, other),
        },
    }
}

pub async fn logout(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let admin: Admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if let Err(resp) = guard::check_post(&state, &ctx, Some(&admin), &admin.csrf, &fields) {
        return resp;
    }
    if let Err(e) = console::logout(&state, &admin.session, &guard::client(&ctx)).await {
        return super::failed(&state, &ctx, Some(&admin), e);
    }
    let mut resp = see_other("/admin/login");
    guard::set_cookie(&state, &mut resp, SESSION_COOKIE, "", 0);
    resp
}
