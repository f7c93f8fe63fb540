//! `/admin/users`: who can sign in to the console (second factor on or not, locked, signed
//! in), and adding a user, whose generated password is shown once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::admin_users::Requester;
use crate::services::{admin_users, ServiceError};
use crate::state::AppState;
use crate::time::rfc3339;

async fn users_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    created: Option<(&str, &str)>,
    error: Option<String>,
) -> Response {
    let users = match admin_users::list(state).await {
        Ok(u) => u,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let now = state.now_ms();
    let rows: Vec<Value> = users
        .iter()
        .map(|u| {
            context! {
                name => u.name.as_str(),
                created => rfc3339(u.created_at),
                totp => u.totp_enabled,
                locked => (u.locked_until > now).then(|| rfc3339(u.locked_until)),
                sessions => u.live_sessions,
                enabled => u.enabled,
                me => u.name == admin.session.user_name,
            }
        })
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/users.html",
        "users",
        context! {
            users => rows,
            created => created.map(|(name, password)| context! { name => name, password => password }),
            error => error,
        },
    )
}

pub async fn page(State(state): State<Arc<AppState>>, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => users_page(&state, &ctx, &admin, StatusCode::OK, None, None).await,
        Err(resp) => resp,
    }
}

pub async fn add(State(state): State<Arc<AppState>>, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let name = field(&fields, "name");
    match admin_users::add(&state, name, &guard::actor(&admin, &ctx)).await {
        Ok(password) => {
            let name = admin_users::parse_name(name).unwrap_or(name);
            users_page(
                &state,
                &ctx,
                &admin,
                StatusCode::CREATED,
                Some((name, &password)),
                None,
            )
            .await
        }
        Err(ServiceError::Invalid { message, .. } | ServiceError::Conflict { message, .. }) => {
            users_page(
                &state,
                &ctx,
                &admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(message),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// `POST /admin/users/{disable,enable,remove}` (`name`; `confirm_self` = `on` when it is the
/// signed-in user). Disabling or removing ends the user's sessions at once; the last enabled
/// user is never disabled or removed.
pub async fn act(
    State(state): State<Arc<AppState>>,
    ctx: Ctx,
    axum::extract::Path(action): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let name = field(&fields, "name");
    let by = Requester {
        user: Some(admin.session.user_name.as_str()),
        confirmed_self: field(&fields, "confirm_self") == "on",
    };
    let actor = guard::actor(&admin, &ctx);
    let outcome = match action.as_str() {
        "disable" => admin_users::set_enabled(&state, name, false, by, &actor).await,
        "enable" => admin_users::set_enabled(&state, name, true, by, &actor).await,
        "remove" => admin_users::remove(&state, name, by, &actor).await,
        _ => {
            return super::message(
                &state,
                &ctx,
                Some(&admin),
                StatusCode::NOT_FOUND,
                "not_found",
            )
        }
    };
    match outcome {
        // Disabled or removed oneself: signed out already.
        Ok(_) if by.user == Some(name) && action != "enable" => see_other("/admin/login"),
        Ok(_) => see_other("/admin/users"),
        Err(
            ServiceError::Invalid { message, .. }
            | ServiceError::Conflict { message, .. }
            | ServiceError::NotFound { message, .. },
        ) => {
            users_page(
                &state,
                &ctx,
                &admin,
                StatusCode::CONFLICT,
                None,
                Some(message),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
