//! `/admin/products`: the seller's catalogue — every product (hidden ones too) with its
//! stock, show/hide at a click, and an edit page for price (in major units, parsed exactly),
//! tiers, quantity limits, category, order, description and the buyer's input fields; delete
//! (hidden instead when the product has orders). Everything goes through
//! `services::products`, as the JSON API does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use kami_core::{Currency, FieldSpec, Money};
use kami_store::{AdminProduct, Delivery, Stock};
use minijinja::{context, Value};

use super::guard::{self, Admin};
use super::{field, render, see_other};
use crate::http::web::request::Ctx;
use crate::services::categories;
use crate::services::products::{self, ProductChanges, TierInput};
use crate::services::ServiceError;
use crate::state::AppState;

type St = State<Arc<AppState>>;

fn row(p: &AdminProduct) -> Value {
    let stock = match (p.product.delivery, p.manual_stock) {
        (Delivery::Manual, Some(n)) => n.to_string(),
        (Delivery::Manual, None) => "∞".to_owned(),
        (Delivery::Auto, _) if p.cards.loop_keys > 0 => "∞".to_owned(),
        (Delivery::Auto, _) => p.cards.available.to_string(),
    };
    context! {
        slug => p.product.slug.as_str(),
        title => p.product.title.as_str(),
        price => p.product.price.to_major_string(),
        currency => p.product.price.currency().code(),
        manual => p.product.delivery == Delivery::Manual,
        category => p.product.category.as_str(),
        sort_order => p.product.sort_order,
        visible => p.visible,
        stock => stock,
        reserved => p.cards.reserved,
        sold => p.cards.sold,
        out => matches!(p.product.stock, Stock::Count(0)),
        has_orders => p.has_orders,
        // Media file names: the templates write `/media/<name>`.
        image => p.product.image.as_deref(),
        thumb => p.product.image_thumb.as_deref(),
    }
}

pub async fn list(State(state): St, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let all = match products::list(&state).await {
        Ok(p) => p,
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    // The list is in the storefront's order: a product moves within its category.
    let category = |i: usize| all.get(i).map(|p| p.product.category.as_str());
    let rows: Vec<Value> = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let here = Some(p.product.category.as_str());
            context! {
                up => i > 0 && category(i - 1) == here,
                down => category(i + 1) == here,
                ..row(p)
            }
        })
        .collect();
    render(
        &state,
        &ctx,
        Some(&admin),
        StatusCode::OK,
        "console/products.html",
        "products",
        context! { products => rows },
    )
}

async fn find(state: &AppState, slug: &str) -> Result<Option<AdminProduct>, ServiceError> {
    Ok(products::list(state)
        .await?
        .into_iter()
        .find(|p| p.product.slug.as_str() == slug))
}

/// The edit form's values: what the product has, or what the seller sent back with an error.
pub(super) fn form_values(p: &AdminProduct) -> Value {
    let pricing = &p.product.pricing;
    let currency = p.product.price.currency();
    let tiers: Vec<String> = pricing
        .tiers()
        .tiers()
        .iter()
        .map(|t| {
            let unit = Money::new(t.unit_minor(), currency)
                .map(Money::to_major_string)
                .unwrap_or_default();
            format!("{} {unit}", t.min_quantity())
        })
        .collect();
    let fields: Vec<String> = p
        .product
        .input_fields
        .specs()
        .iter()
        .map(|f| {
            format!(
                "{} | {} | {} | {}",
                f.name,
                f.label,
                if f.required { "required" } else { "optional" },
                f.pattern.as_deref().unwrap_or("")
            )
            .trim_end_matches([' ', '|'])
            .to_owned()
        })
        .collect();
    context! {
        title => p.product.title.as_str(),
        price => p.product.price.to_major_string(),
        category => p.product.category.as_str(),
        sort_order => p.product.sort_order.to_string(),
        visible => p.visible,
        min_quantity => pricing.min_quantity().to_string(),
        max_quantity => pricing.max_quantity().to_string(),
        description => p.product.description.as_str(),
        tiers => tiers.join("\n"),
        fields => fields.join("\n"),
        prices => p
            .product
            .prices
            .iter()
            .map(|m| format!("{} {}", m.currency(), m.to_major_string()))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

pub(super) fn sent_values(fields: &[(String, String)]) -> Value {
    let f = |n: &str| field(fields, n).to_owned();
    context! {
        slug => f("slug"), currency => f("currency"), delivery => f("delivery"),
        stock => f("stock"),
        title => f("title"), price => f("price"), category => f("category"),
        sort_order => f("sort_order"), visible => field(fields, "visible") == "on",
        min_quantity => f("min_quantity"), max_quantity => f("max_quantity"),
        description => f("description"), tiers => f("tiers"), fields => f("fields"),
        prices => f("prices"),
    }
}

/// The names of the categories, for the form's suggestions.
pub(super) async fn category_names(state: &AppState) -> Vec<String> {
    match categories::list(state).await {
        Ok(list) => list.into_iter().map(|c| c.name).collect(),
        Err(e) => {
            tracing::warn!("listing categories: {e}");
            Vec::new()
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn edit_page(
    state: &AppState,
    ctx: &Ctx,
    admin: &Admin,
    status: StatusCode,
    p: &AdminProduct,
    values: Value,
    error: Option<String>,
    saved: bool,
) -> Response {
    render(
        state,
        ctx,
        Some(admin),
        status,
        "console/product_edit.html",
        "products",
        context! {
            creating => false,
            product => row(p),
            form => values,
            error => error,
            saved => saved,
            categories => category_names(state).await,
            max_mb => crate::media::MAX_UPLOAD_BYTES / (1024 * 1024),
            // The saved description as the storefront shows it (sanitised).
            preview => crate::markup::markdown(&p.product.description),
        },
    )
}

pub async fn edit(State(state): St, ctx: Ctx, Path(slug): Path<String>) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    match find(&state, &slug).await {
        Ok(Some(p)) => {
            let saved = ctx.query_without_lang.split('&').any(|kv| kv == "saved=1");
            edit_page(
                &state,
                &ctx,
                &admin,
                StatusCode::OK,
                &p,
                form_values(&p),
                None,
                saved,
            )
            .await
        }
        Ok(None) => super::message(
            &state,
            &ctx,
            Some(&admin),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

pub(super) fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid("invalid_form", message)
}

fn whole(name: &str, value: &str) -> Result<i64, ServiceError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(format!("{name} must be a whole number")))
}

/// The form's fields as the API's changes: prices in major units of the product's currency,
/// parsed exactly (never through a float). The new-product form sends the same fields.
pub(super) fn changes(
    currency: Currency,
    f: &[(String, String)],
) -> Result<ProductChanges, ServiceError> {
    let money = |what: &str, s: &str| {
        Money::from_major_str(s.trim(), currency)
            .map(Money::minor)
            .map_err(|e| invalid(format!("{what}: {e}")))
    };
    let mut tiers = Vec::new();
    for line in field(f, "tiers")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(min), Some(price), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(format!(
                "wholesale tier {line:?}: write the quantity, a space, then the unit price"
            )));
        };
        tiers.push(TierInput {
            min_quantity: whole("a tier's quantity", min)?,
            price: money("a tier's unit price", price)?,
        });
    }
    let mut specs = Vec::new();
    for line in field(f, "fields")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let required = match parts.get(2).copied().unwrap_or("") {
            "required" | "必填" => true,
            "" | "optional" | "选填" => false,
            other => {
                return Err(invalid(format!(
                    "input field {line:?}: {other:?} is neither \"required\" nor \"optional\""
                )))
            }
        };
        let (Some(name), Some(label)) = (parts.first(), parts.get(1)) else {
            return Err(invalid(format!(
                "input field {line:?}: write name | label | required or optional | pattern"
            )));
        };
        specs.push(FieldSpec {
            name: (*name).to_owned(),
            label: (*label).to_owned(),
            required,
            pattern: parts
                .get(3)
                .filter(|p| !p.is_empty())
                .map(|p| (*p).to_owned()),
        });
    }
    // Absent from the form (an older page): the prices stay as they are.
    let prices = match f.iter().any(|(k, _)| k == "prices") {
        false => None,
        true => Some(own_prices(field(f, "prices"))?),
    };
    Ok(ProductChanges {
        prices,
        title: Some(field(f, "title").to_owned()),
        price: Some(money("price", field(f, "price"))?),
        description: Some(field(f, "description").replace("\r\n", "\n")),
        category: Some(field(f, "category").to_owned()),
        visible: Some(field(f, "visible") == "on"),
        tiers: Some(tiers),
        min_quantity: Some(whole("the least quantity", field(f, "min_quantity"))?),
        max_quantity: Some(whole("the most quantity", field(f, "max_quantity"))?),
        sort_order: Some(whole("the order", field(f, "sort_order"))?),
        input_fields: Some(specs),
    })
}

/// `USD 1.39` lines: a currency code, a space, the unit price in that currency.
fn own_prices(text: &str) -> Result<BTreeMap<String, i64>, ServiceError> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(code), Some(price), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(format!(
                "price {line:?}: write the currency, a space, then the unit price (e.g. USD 1.39)"
            )));
        };
        let currency = Currency::parse(&code.to_ascii_uppercase())
            .map_err(|e| invalid(format!("price {line:?}: {e}")))?;
        let minor = Money::from_major_str(price, currency)
            .map_err(|e| invalid(format!("price {line:?}: {e}")))?
            .minor();
        if out.insert(currency.code().to_owned(), minor).is_some() {
            return Err(invalid(format!("two prices in {currency}")));
        }
    }
    Ok(out)
}

pub async fn save(State(state): St, ctx: Ctx, Path(slug): Path<String>, body: Bytes) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let p = match find(&state, &slug).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return super::message(
                &state,
                &ctx,
                Some(&admin),
                StatusCode::NOT_FOUND,
                "not_found",
            )
        }
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let outcome = match changes(p.product.price.currency(), &fields) {
        Ok(c) => products::update(&state, &slug, c, &guard::actor(&admin, &ctx)).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => see_other(&format!("/admin/products/{slug}?saved=1")),
        Err(e) => match form_refusal(&e) {
            Some(message) => {
                edit_page(
                    &state,
                    &ctx,
                    &admin,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &p,
                    sent_values(&fields),
                    Some(message),
                    false,
                )
                .await
            }
            None => super::failed(&state, &ctx, Some(&admin), e),
        },
    }
}

/// The message of a refusal the seller fixes in the form: the service's `Invalid`, or a
/// store refusal of the input (limits against tiers, a price the currency cannot hold).
/// `None`: a fault.
pub(super) fn form_refusal(e: &ServiceError) -> Option<String> {
    use kami_store::StoreError as E;
    match e {
        ServiceError::Invalid { message, .. } => Some(message.clone()),
        ServiceError::Store(
            e @ (E::InvalidInput(_)
            | E::InvalidQuantity(_)
            | E::InvalidAmount(_)
            | E::InvalidPricing(_)),
        ) => Some(e.to_string()),
        _ => None,
    }
}

/// Show or hide at a click from the list.
pub async fn visibility(
    State(state): St,
    ctx: Ctx,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let (admin, fields) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let changes = ProductChanges {
        visible: Some(field(&fields, "visible") == "1"),
        ..ProductChanges::default()
    };
    match products::update(&state, &slug, changes, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other("/admin/products"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}

/// Delete (no orders) or hide (has orders).
pub async fn remove(State(state): St, ctx: Ctx, Path(slug): Path<String>, body: Bytes) -> Response {
    let (admin, _) = match guard::post(&state, &ctx, &body).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    match products::remove(&state, &slug, &guard::actor(&admin, &ctx)).await {
        Ok(_) => see_other("/admin/products"),
        Err(e) => super::failed(&state, &ctx, Some(&admin), e),
    }
}
