//! `/admin/security`: the user's sessions (revoke one, or all others) and the second factor
//! (enrol with a QR code, confirm, recovery codes shown once, turn off with a code).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, form_fields, render, see_other};
use crate::http::web::request::Ctx;
use crate::markup::qr_svg;
use crate::services::two_factor::{self, Enrolment};
use crate::services::{console, ServiceError};
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;

/// The signed-in user and the POST's fields, once its origin and form token check out.
async fn post_guard(
    state: &AppState,
    ctx: &Ctx,
    body: &[u8],
) -> Result<(Admin, Vec<(String, String)>), Response> {
    let fields = form_fields(body);
    let admin = guard::require(state, ctx).await?;
    guard::check_post(state, ctx, Some(&admin), &admin.csrf, &fields)?;
    Ok((admin, fields))
}

async fn security_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let sessions = match console::sessions(state, &admin.session).await {
        Ok(s) => s,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let user = match state.store.admin_user(&admin.session.user_name).await {
        Ok(u) => u,
        Err(e) => return super::failed(state, ctx, Some(admin), e.into()),
    };
    let codes_left = match state
        .store
        .admin_recovery_codes_left(admin.session.user_id)
        .await
    {
        Ok(n) => n,
        Err(e) => return super::failed(state, ctx, Some(admin), e.into()),
    };
    let rows: Vec<Value> = sessions
        .iter()
        .map(|s| {
            context! {
                id => s.id,
                created => rfc3339(s.created_at),
                last_seen => rfc3339(s.last_seen_at),
                ip => s.ip.as_deref().unwrap_or(""),
                user_agent => s.user_agent.as_str(),
                current => s.id == admin.session.id,
            }
        })
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/security.html",
        "security",
        context! {
            sessions => rows,
            totp_on => user.is_some_and(|u| u.totp_enabled),
            codes_left => codes_left,
            notice => notice,
        },
    )
}

pub async fn page(State(state): St, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => security_page(&state, &ctx, &admin, StatusCode::OK, None).await,
        Err(resp) => resp,
    }
}

pub async fn revoke(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Ok(id) = field(&fields, "session").parse::<i64>() else {
        return super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        );
    };
    match console::revoke(&state, &admin.session, id, &guard::client(&ctx)).await {
        Ok(()) if id == admin.session.id => {
            let mut resp = see_other("/admin/login");
            guard::set_cookie(&state, &mut resp, guard::SESSION_COOKIE, "", 0);
            resp
        }
        Ok(()) => see_other("/admin/security"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

pub async fn revoke_others(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match console::revoke_others(&state, &admin.session, &guard::client(&ctx)).await {
        Ok(_) => see_other("/admin/security"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

fn enrol_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    e: &Enrolment,
    error: Option<&str>,
) -> Response {
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/totp_enrol.html",
        "security",
        context! {
            qr_svg => qr_svg(&e.otpauth_uri).unwrap_or_default(),
            secret => e.secret_base32.as_str(),
            error => error,
        },
    )
}

pub async fn totp_begin(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, _) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match two_factor::begin(&state, &admin.session).await {
        Ok(e) => enrol_page(&state, &ctx, &admin, StatusCode::OK, &e, None),
        Err(ServiceError::Store(kami_store::StoreError::InvalidStatus(_))) => {
            security_page(
                &state,
                &ctx,
                &admin,
                StatusCode::CONFLICT,
                Some("already_on"),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

pub async fn totp_confirm(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let client = guard::client(&ctx);
    match two_factor::confirm(&state, &admin.session, field(&fields, "code"), &client).await {
        Ok(codes) => render(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::OK,
            "console/recovery_codes.html",
            "security",
            context! { codes => codes },
        ),
        Err(ServiceError::Invalid {
            code: "bad_code", ..
        }) => match two_factor::pending(&state, &admin.session).await {
            Ok(Some(e)) => enrol_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                &e,
                Some("bad_code"),
            ),
            Ok(None) => see_other("/admin/security"),
            Err(e) => super::failed(&state, &ctx, Some(&admin), e),
        },
        Err(ServiceError::Invalid { .. }) => see_other("/admin/security"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

pub async fn totp_disable(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match post_guard(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let client = guard::client(&ctx);
    match two_factor::disable(&state, &admin.session, field(&fields, "code"), &client).await {
        Ok(()) => see_other("/admin/security"),
        Err(ServiceError::Invalid { .. }) => {
            security_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("bad_code"),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
