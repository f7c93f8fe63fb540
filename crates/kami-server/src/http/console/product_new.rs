//! `/admin/products/new`: the new-product form — the edit form's fields (price in major
//! units, parsed exactly, tiers, limits, category, description, the buyer's input fields)
//! plus slug, currency, delivery, stock and an optional picture. It creates through
//! `services::products::create`, as `POST /api/v1/admin/products` does; a picture is checked
//! before anything is created, so a refused one creates nothing.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kami_core::Currency;
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::products::{category_names, changes, form_refusal, invalid, sent_values};
use super::upload::{self, Refused};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::products::{self, NewProductInput};
use crate::services::{product_images, ServiceError};
use crate::state::AppState;

type St = State<Arc<AppState>>;

/// The form's starting values.
fn blank() -> Value {
    context! {
        slug => "", currency => "CNY", delivery => "auto", stock => "",
        title => "", price => "", category => "", sort_order => "0", visible => true,
        min_quantity => "1", max_quantity => "100", description => "", tiers => "", fields => "", prices => "",
    }
}

async fn form_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    values: Value,
    error: Option<String>,
) -> Response {
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/product_edit.html",
        "products",
        context! {
            creating => true,
            saved => false,
            preview => "",
            form => values,
            error => error,
            categories => category_names(state).await,
            max_mb => crate::media::MAX_UPLOAD_BYTES / (1024 * 1024),
        },
    )
}

pub async fn form(State(state): St, ctx: Ctx) -> Response {
    match guard::require(&state, &ctx).await {
        Ok(admin) => form_page(&state, &ctx, &admin, StatusCode::OK, blank(), None).await,
        Err(resp) => resp,
    }
}

/// The form as the API's new-product body.
fn input(f: &[(String, String)]) -> Result<NewProductInput, ServiceError> {
    let currency = Currency::parse(field(f, "currency").trim())
        .map_err(|e| ServiceError::invalid("invalid_currency", format!("currency: {e}")))?;
    let c = changes(currency, f)?;
    let stock = match (field(f, "delivery"), field(f, "stock").trim()) {
        ("manual", s) if !s.is_empty() => Some(
            s.parse::<i64>()
                .map_err(|_| invalid("the stock must be a whole number (empty: unlimited)"))?,
        ),
        _ => None,
    };
    Ok(NewProductInput {
        slug: field(f, "slug").trim().to_owned(),
        title: c.title.unwrap_or_default(),
        price: c.price.unwrap_or_default(),
        currency: currency.code().to_owned(),
        delivery: field(f, "delivery").to_owned(),
        description: c.description.unwrap_or_default(),
        stock,
        category: c.category.unwrap_or_default(),
        sort_order: c.sort_order.unwrap_or_default(),
        min_quantity: c.min_quantity.unwrap_or(1),
        max_quantity: c.max_quantity.unwrap_or(100),
        tiers: c.tiers.unwrap_or_default(),
        input_fields: c.input_fields.unwrap_or_default(),
        visible: c.visible.unwrap_or(true),
        prices: c.prices.unwrap_or_default(),
    })
}

/// The seller's input was refused: its message (else `None`: a fault).
fn refusal(e: &ServiceError) -> Option<String> {
    match e {
        ServiceError::Conflict { message, .. } => Some(message.clone()),
        ServiceError::Store(kami_store::StoreError::ProductExists) => {
            Some("a product with this slug already exists".to_owned())
        }
        other => form_refusal(other),
    }
}

pub async fn create(
    State(state): St,
    ctx: Ctx,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let (admin, upload) = match upload::post(&state, &ctx, form, "image").await {
        Ok(v) => v,
        Err(Refused::Page(resp)) => return resp,
        Err(Refused::Form(admin, e)) => {
            let (status, message) = e.explain();
            return form_page(&state, &ctx, &admin, status, blank(), Some(message)).await;
        }
    };
    let fields = upload.fields;
    let again = |status: StatusCode, message: String| {
        form_page(
            &state,
            &ctx,
            &admin,
            status,
            sent_values(&fields),
            Some(message),
        )
    };
    let parsed = match input(&fields) {
        Ok(i) => i,
        Err(e) => return again(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).await,
    };
    // The picture first: refused, nothing is created.
    let picture = match upload.file {
        Some(bytes) => match product_images::prepare(bytes).await {
            Ok(p) => Some(p),
            Err(e) => return again(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).await,
        },
        None => None,
    };
    let actor = guard::actor(&admin, &ctx);
    let slug = parsed.slug.clone();
    let created = match products::create(&state, parsed, &actor).await {
        Ok(p) => p,
        Err(e) => match refusal(&e) {
            Some(m) => {
                let status = match e {
                    ServiceError::Store(kami_store::StoreError::ProductExists)
                    | ServiceError::Conflict { .. } => StatusCode::CONFLICT,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                return again(status, m).await;
            }
            None => return super::failed(&state, &ctx, Some(&admin), e),
        },
    };
    if let Some(p) = picture {
        if let Err(e) = product_images::attach(&state, &slug, p, &actor).await {
            return super::failed(&state, &ctx, Some(&admin), e);
        }
    }
    see_other(&format!(
        "/admin/products/{}?saved=1",
        created.product.slug.as_str()
    ))
}
