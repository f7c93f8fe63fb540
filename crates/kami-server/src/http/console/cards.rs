//! `/admin/products/{slug}/cards`: a product's card keys, filtered by status and import
//! batch, secrets revealed on demand; import from a textarea or a file (streamed, with a
//! progress bar when JavaScript runs, and the de-duplication result); export unsold keys as
//! CSV; delete one unsold key, a batch's, or all. Through `services::card_stock` and the
//! same streamed import as the JSON API; secrets stay sealed at rest.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use kami_core::CardStatus;
use kami_store::{CardFilter, CardSelection};
use minijinja::{context, Value};
use serde::Deserialize;
use serde_json::json;

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::api::import_stream;
use crate::http::web::request::Ctx;
use crate::services::card_stock;
use crate::services::ServiceError;
use crate::state::AppState;
use crate::time::rfc3339;

type St = State<Arc<AppState>>;

/// Keys per page.
const PAGE: u32 = 100;

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    batch: String,
    before: Option<i64>,
    /// The result of the import just done (no-JS form path).
    imported: Option<u64>,
    duplicates: Option<u64>,
    rejected: Option<u64>,
    deleted: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn cards_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    slug: &str,
    f: &Filter,
    status_code: StatusCode,
    error: Option<String>,
) -> Response {
    let product = match state.store.admin_product(slug).await {
        Ok(p) => p,
        Err(e) => return super::failed(state, ctx, Some(admin), e.into()),
    };
    let status = match f.status.as_str() {
        "" => None,
        s => match card_stock::parse_status(s) {
            Ok(s) => Some(s),
            Err(e) => return super::failed(state, ctx, Some(admin), e),
        },
    };
    let batch = f.batch.trim().parse::<i64>().ok();
    let filter = CardFilter {
        status,
        batch,
        before: f.before,
        limit: PAGE,
    };
    let (cards, batches) = match tokio::try_join!(
        card_stock::list(state, slug, filter),
        card_stock::batches(state, slug, 50)
    ) {
        Ok(v) => v,
        Err(e) => return super::failed(state, ctx, Some(admin), e),
    };
    let next = (cards.len() == PAGE as usize)
        .then(|| cards.last().map(|c| c.id))
        .flatten()
        .map(|id| format!("?status={}&batch={}&before={id}", f.status, f.batch));
    let rows: Vec<Value> = cards
        .iter()
        .map(|c| {
            context! {
                id => c.id,
                secret => c.secret.as_str(),
                status => c.status.as_str(),
                unsold => c.status == CardStatus::Available,
                batch => c.batch,
                is_loop => c.is_loop,
                created => rfc3339(c.created_at),
                order_no => c.order_no.as_ref().map(ToString::to_string),
            }
        })
        .collect();
    let batch_rows: Vec<Value> = batches
        .iter()
        .map(|b| {
            context! {
                id => b.id, imported => b.imported, duplicates => b.duplicates,
                actor => b.actor.as_str(), created => rfc3339(b.created_at), is_loop => b.is_loop,
            }
        })
        .collect();
    render(
        state,
        ctx,
        Some(admin),
        status_code,
        "console/cards.html",
        "products",
        context! {
            product => context! {
                slug => slug,
                title => product.product.title.as_str(),
                auto => product.product.delivery == kami_store::Delivery::Auto,
                available => product.cards.available,
                reserved => product.cards.reserved,
                sold => product.cards.sold,
                loop_keys => product.cards.loop_keys,
            },
            cards => rows,
            batches => batch_rows,
            filter => context! { status => f.status.as_str(), batch => f.batch.as_str() },
            next => next,
            result => f.imported.map(|i| context! {
                imported => i, duplicates => f.duplicates.unwrap_or(0), rejected => f.rejected.unwrap_or(0),
            }),
            deleted => f.deleted,
            error => error,
        },
    )
}

pub async fn page(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    Query(f): Query<Filter>,
) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => cards_page(&state, &ctx, &admin, &slug, &f, StatusCode::OK, None).await,
        Err(resp) => resp,
    }
}

/// The import. With JavaScript the page sends the file or the textarea as the raw body
/// (`text/plain`, the form token in `X-CSRF-Token`) and gets JSON back, showing upload
/// progress; without, the form posts the textarea and gets the page back.
pub async fn import(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        return import_form(state, ctx, slug, body).await;
    }
    // Checked before a byte of the body is read.
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let fields = vec![("csrf".to_owned(), token)];
    if let Err(resp) = guard::check_post(&state, &ctx, Some(&admin), &admin.csrf, &fields) {
        return resp;
    }
    let is_loop = ctx.query_without_lang.split('&').any(|kv| kv == "loop=1");
    match import_stream(&state, &slug, is_loop, &guard::actor(&admin, &ctx), body).await {
        Ok(t) => Json(json!({
            "imported": t.imported, "duplicates": t.duplicates,
            "rejected": t.rejected, "batch": t.batch,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn import_form(state: Arc<AppState>, ctx: Ctx, slug: String, body: Body) -> Response {
    // The textarea path is bounded like every form (2 MB); files go through the stream.
    let bytes = match axum::body::to_bytes(body, 2 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the keys are too large for a form; use the file import",
            )
                .into_response()
        }
    };
    let (admin, fields) = match guard::post(&state, &ctx, &bytes).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let keys = field(&fields, "keys").to_owned();
    let is_loop = field(&fields, "loop") == "on";
    match import_stream(
        &state,
        &slug,
        is_loop,
        &guard::actor(&admin, &ctx),
        Body::from(keys),
    )
    .await
    {
        Ok(t) => see_other(&format!(
            "/admin/products/{slug}/cards?imported={}&duplicates={}&rejected={}",
            t.imported, t.duplicates, t.rejected
        )),
        Err(e) => {
            cards_page(
                &state,
                &ctx,
                &admin,
                &slug,
                &Filter::default(),
                e.status,
                Some(e.message),
            )
            .await
        }
    }
}

/// Delete one unsold key (`card`), a batch's unsold keys (`batch`) or all unsold (`all`).
pub async fn delete(State(state): St, ctx: Ctx, Path(slug): Path<String>, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let actor = guard::actor(&admin, &ctx);
    let outcome = if let Ok(id) = field(&fields, "card").parse::<i64>() {
        card_stock::delete_one(&state, &slug, id, &actor)
            .await
            .map(|()| 1)
    } else if let Ok(batch) = field(&fields, "batch").parse::<i64>() {
        card_stock::delete_many(&state, &slug, CardSelection::Batch(batch), &actor).await
    } else if field(&fields, "all") == "unsold" {
        card_stock::delete_many(&state, &slug, CardSelection::AllUnsold, &actor).await
    } else {
        Err(ServiceError::invalid(
            "invalid_selection",
            "say which keys to delete",
        ))
    };
    match outcome {
        Ok(n) => see_other(&format!("/admin/products/{slug}/cards?deleted={n}")),
        Err(ServiceError::Invalid { message, .. } | ServiceError::Conflict { message, .. }) => {
            cards_page(
                &state,
                &ctx,
                &admin,
                &slug,
                &Filter::default(),
                StatusCode::CONFLICT,
                Some(message),
            )
            .await
        }
        Err(ServiceError::Store(e @ kami_store::StoreError::CardSold)) => {
            cards_page(
                &state,
                &ctx,
                &admin,
                &slug,
                &Filter::default(),
                StatusCode::CONFLICT,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// Unsold keys as a CSV attachment (streamed), audited.
pub async fn export(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    Query(f): Query<Filter>,
) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let status = match card_stock::parse_status(if f.status.is_empty() {
        "available"
    } else {
        &f.status
    }) {
        Ok(s) => s,
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    match card_stock::export_csv(&state, &slug, status, &guard::actor(&admin, &ctx)).await {
        Ok(stream) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{slug}-{}.csv\"", status.as_str()),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
