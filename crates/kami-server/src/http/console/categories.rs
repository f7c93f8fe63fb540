//! `/admin/categories`: the catalogue's groups in the storefront's order, with how many
//! products each holds — create, rename (its products follow), move up or down, delete (its
//! products stay, without a category). Through `services::categories`, as the API's
//! `/api/v1/admin/categories` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::categories::{self, CategoryChanges};
use crate::services::{products, ServiceError};
use crate::state::AppState;

type St = State<Arc<AppState>>;

async fn page_with(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let list = match categories::list(state).await {
        Ok(l) => l,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let last = list.len().saturating_sub(1);
    let rows: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, c)| {
            context! {
                name => c.name.as_str(),
                sort_order => c.sort_order,
                products => c.products,
                up => i > 0,
                down => i < last,
            }
        })
        .collect();
    let done = ctx
        .query_without_lang
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="))
        .filter(|d| ["created", "renamed", "moved", "deleted"].contains(d))
        .map(str::to_owned);
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/categories.html",
        "products",
        context! { categories => rows, error => error, done => done },
    )
}

pub async fn page(State(state): St, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => page_with(&state, &ctx, &admin, StatusCode::OK, None).await,
        Err(resp) => resp,
    }
}

/// A service outcome as the page: done → back to the list saying what; refused → the list
/// with the reason; a fault → the error page.
async fn answer<T>(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    outcome: Result<T, ServiceError>,
    done: &str,
) -> Response {
    match outcome {
        Ok(_) => see_other(&format!("/admin/categories?done={done}")),
        Err(ServiceError::Invalid { message, .. }) => {
            page_with(
                state,
                ctx,
                admin,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(message),
            )
            .await
        }
        Err(ServiceError::Conflict { message, .. } | ServiceError::NotFound { message, .. }) => {
            page_with(state, ctx, admin, StatusCode::CONFLICT, Some(message)).await
        }
        Err(e) => super::failed(state, ctx, Some(admin), e),
    }
}

/// `POST /admin/categories` (`name`): a new category, last.
pub async fn create(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let outcome = categories::create(
        &state,
        field(&fields, "name"),
        None,
        &guard::actor(&admin, &ctx),
    )
    .await;
    answer(&state, &ctx, &admin, outcome, "created").await
}

/// `POST /admin/categories/rename` (`name`, `new_name`).
pub async fn rename(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let changes = CategoryChanges {
        name: Some(field(&fields, "new_name").to_owned()),
        sort_order: None,
    };
    let outcome = categories::update(
        &state,
        field(&fields, "name"),
        changes,
        &guard::actor(&admin, &ctx),
    )
    .await;
    answer(&state, &ctx, &admin, outcome, "renamed").await
}

/// `POST /admin/categories/move` (`name`, `direction` = `up` | `down`).
pub async fn move_one(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let outcome = match products::parse_direction(field(&fields, "direction")) {
        Ok(dir) => {
            categories::move_one(
                &state,
                field(&fields, "name"),
                dir,
                &guard::actor(&admin, &ctx),
            )
            .await
        }
        Err(e) => Err(e),
    };
    answer(&state, &ctx, &admin, outcome, "moved").await
}

/// `POST /admin/categories/delete` (`name`): its products stay, without a category.
pub async fn delete(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let outcome =
        categories::delete(&state, field(&fields, "name"), &guard::actor(&admin, &ctx)).await;
    answer(&state, &ctx, &admin, outcome, "deleted").await
}
