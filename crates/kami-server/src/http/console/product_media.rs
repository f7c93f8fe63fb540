//! A product's picture from the console (upload, replace, remove) and its place in the
//! catalogue (one place up or down within its category). Through `services::product_images`
//! and `services::products`, as the API's `PUT|DELETE .../image` and `POST .../move`.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::guard::{self, Admin};
use super::products::{edit_page, form_values};
use super::upload::{self, Refused};
use super::{field, see_other};
use crate::http::web::request::Ctx;
use crate::services::{product_images, products, ServiceError};
use crate::state::AppState;

type St = State<Arc<AppState>>;

/// The edit page again with `message` about the picture (nothing changed).
async fn refused(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    slug: &str,
    status: StatusCode,
    message: String,
) -> Response {
    match state.store.admin_product(slug).await {
        Ok(p) => {
            edit_page(
                state,
                ctx,
                admin,
                status,
                &p,
                form_values(&p),
                Some(message),
                false,
            )
            .await
        }
        Err(e) => super::failed(state, ctx, Some(admin), e.into()),
    }
}

/// `POST /admin/products/{slug}/image` (multipart, field `image`): the product's picture.
pub async fn upload(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let (admin, upload) = match upload::post(&state, &ctx, form, "image").await {
        Ok(v) => v,
        Err(Refused::Page(resp)) => return resp,
        Err(Refused::Form(admin, e)) => {
            let (status, message) = e.explain();
            return refused(&state, &ctx, &admin, &slug, status, message).await;
        }
    };
    let Some(bytes) = upload.file else {
        return refused(
            &state,
            &ctx,
            &admin,
            &slug,
            StatusCode::UNPROCESSABLE_ENTITY,
            "choose a picture to upload".to_owned(),
        )
        .await;
    };
    match product_images::set(&state, &slug, bytes, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other(&format!("/admin/products/{slug}?saved=1")),
        Err(ServiceError::Invalid { message, .. }) => {
            refused(
                &state,
                &ctx,
                &admin,
                &slug,
                StatusCode::UNPROCESSABLE_ENTITY,
                message,
            )
            .await
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// `POST /admin/products/{slug}/image/delete`: no picture any more.
pub async fn remove(State(state): St, ctx: Ctx, Path(slug): Path<String>, body: Bytes) -> Response {
    let (admin, _) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match product_images::clear(&state, &slug, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other(&format!("/admin/products/{slug}?saved=1")),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// `POST /admin/products/{slug}/move` (`direction` = `up` | `down`), from the list.
pub async fn move_one(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let outcome = match products::parse_direction(field(&fields, "direction")) {
        Ok(dir) => products::move_product(&state, &slug, dir, &guard::actor(&admin, &ctx)).await,
        Err(e) => Err(e),
    };
    match outcome {
        // At an end already: the list shows where it is.
        Ok(_) | Err(ServiceError::Conflict { .. }) => see_other("/admin/products"),
        Err(e @ ServiceError::Invalid { .. }) => {
            tracing::debug!("console move: {e}");
            super::message(
                &state,
                &ctx,
                Some(&admin),
                StatusCode::NOT_FOUND,
                "not_found",
            )
        }
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
