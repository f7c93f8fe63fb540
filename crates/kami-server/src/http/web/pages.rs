//! Page handlers: catalogue, product, checkout / order, keys download, lookup.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kami_core::{Method, OrderNo, OrderStatus, OwnPrices, SecretToken};
use kami_pay::{Device, PaymentAction};
use kami_store::{Order, StoreError};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use super::request::{page, security_headers, Caching, Ctx, ORDERS_COOKIE};
use crate::catalog::ProductView;
use crate::http::error::ApiError;
use crate::i18n::Locale;
use crate::limits::RetryAfter;
use crate::markup::qr_svg;
use crate::services::checkout::{place_order, OrderInput};
use crate::services::order_actions::{self, BuyerCheck};
use crate::services::{lookup, orders, ServiceError};
use crate::state::AppState;
use crate::theme::format_money;

type St = State<Arc<AppState>>;

// ---------------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------------

/// Variables every page template gets.
fn base(state: &AppState, ctx: &Ctx) -> Value {
    let langs: Vec<Value> = Locale::ALL
        .iter()
        .map(|l| {
            context! {
                tag => l.tag(),
                current => *l == ctx.locale,
                // Query-only links: the path is never echoed (`//evil.example` would be a
                // link off the shop).
                href => if ctx.query_without_lang.is_empty() {
                    format!("?lang={}", l.tag())
                } else {
                    format!("?{}&lang={}", ctx.query_without_lang, l.tag())
                },
            }
        })
        .collect();
    let settings = state.settings();
    context! {
        shop => context! {
            name => settings.shop.name.as_str(),
            logo => settings.shop.logo.as_str(),
            contact => settings.shop.contact.as_str(),
            notice_html => settings.notice_html.as_str(),
            footer_html => settings.footer_html.as_str(),
            mail => settings.mailer.is_some(),
        },
        langs => langs,
        in_app => ctx.in_app.map(|a| a.as_str()),
        mobile => ctx.mobile,
    }
}

fn respond(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    caching: Caching,
    name: &str,
    vars: Value,
) -> Response {
    match state
        .theme
        .render(name, ctx.locale, context! { ..vars, ..base(state, ctx) })
    {
        Ok(html) => page(ctx, status, caching, html),
        Err(e) => {
            // Display only: the alternate form would print the template context (tokens, keys).
            tracing::error!("rendering {name}: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A page with a title and a message (errors, not found, guides).
pub fn message(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    kind: &str,
    extra: Value,
) -> Response {
    respond(
        state,
        ctx,
        status,
        Caching::NoStore,
        "message.html",
        context! { kind => kind, ..extra },
    )
}

pub(super) fn not_found(state: &AppState, ctx: &Ctx) -> Response {
    refused(state, ctx, StatusCode::NOT_FOUND, "not_found")
}

/// The message page for a request that is not served (`kind` names the message).
pub(super) fn refused(state: &AppState, ctx: &Ctx, status: StatusCode, kind: &str) -> Response {
    message(state, ctx, status, kind, context! {})
}

pub(super) fn internal(state: &AppState, ctx: &Ctx, cause: impl std::fmt::Display) -> Response {
    tracing::error!("page: {cause}");
    message(
        state,
        ctx,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        context! {},
    )
}

/// `Retry-After: seconds` on a refused request's page.
fn with_retry_after(mut resp: Response, seconds: Option<u64>) -> Response {
    if let Some(s) = seconds {
        resp.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    resp
}

/// Unknown paths outside the API get a page; the API keeps its JSON.
pub async fn fallback(State(state): St, ctx: Ctx, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::http::api::not_found_json().into_response();
    }
    not_found(&state, &ctx)
}

// ---------------------------------------------------------------------------------------------
// Catalogue and product
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Category<'a> {
    name: &'a str,
    products: Vec<&'a ProductView>,
}

pub async fn catalogue(State(state): St, ctx: Ctx) -> Response {
    let products = match state
        .catalog
        .products(&state.store, state.config.shop.low_stock_threshold)
        .await
    {
        Ok(p) => p,
        Err(e) => return internal(&state, &ctx, e),
    };
    // Categories in the order their first product sorts.
    let mut cats: Vec<Category> = Vec::new();
    for p in products.iter() {
        match cats.iter_mut().find(|c| c.name == p.category) {
            Some(c) => c.products.push(p),
            None => cats.push(Category {
                name: &p.category,
                products: vec![p],
            }),
        }
    }
    let recent = ctx.recent_orders().len();
    respond(
        &state,
        &ctx,
        StatusCode::OK,
        Caching::Revalidate,
        "catalogue.html",
        context! { categories => cats, recent_count => recent },
    )
}

#[derive(Serialize)]
struct MethodView {
    value: &'static str,
    blocked: bool,
    checked: bool,
}

/// The methods some channel can charge this product with now.
fn product_methods(state: &AppState, p: &ProductView) -> Vec<Method> {
    state.channels.methods_for(
        state.now_ms(),
        p.money.currency(),
        &p.own_prices,
        &state.settings().fx,
    )
}

fn method_views(
    state: &AppState,
    ctx: &Ctx,
    p: &ProductView,
    chosen: Option<&str>,
) -> Vec<MethodView> {
    let methods = product_methods(state, p);
    let first_ok = methods
        .iter()
        .find(|m| !ctx.in_app.is_some_and(|a| a.blocks(**m)))
        .copied();
    methods
        .into_iter()
        .map(|m| MethodView {
            value: m.as_str(),
            blocked: ctx.in_app.is_some_and(|a| a.blocks(m)),
            checked: match chosen {
                Some(c) => c == m.as_str(),
                None => Some(m) == first_ok,
            },
        })
        .collect()
}

/// Inside an app's browser that cannot open some of the shop's methods (WeChat: Alipay and
/// QQ; QQ: Alipay and WeChat Pay): the app and those methods, so the product page says so
/// before the buyer fills the form (the same guide follows a submit with one of them).
fn inapp_guide(state: &AppState, ctx: &Ctx, p: &ProductView) -> Option<Value> {
    let app = ctx.in_app?;
    let blocked: Vec<&'static str> = product_methods(state, p)
        .into_iter()
        .filter(|m| app.blocks(*m))
        .map(Method::as_str)
        .collect();
    (!blocked.is_empty()).then(|| context! { app => app.as_str(), methods => blocked })
}

async fn find_product(
    state: &AppState,
    slug: &str,
) -> Result<Option<ProductView>, kami_store::StoreError> {
    let threshold = state.config.shop.low_stock_threshold;
    match state.catalog.products(&state.store, threshold).await {
        Ok(list) => {
            if let Some(p) = list.iter().find(|p| p.slug == slug) {
                return Ok(Some(p.clone()));
            }
        }
        Err(e) => tracing::error!("catalogue: {e}"),
    }
    // Not in the cached list (just created, or the cache failed): ask the store.
    Ok(state
        .store
        .product(slug)
        .await?
        .map(|p| crate::catalog::view(&p, threshold)))
}

#[derive(Serialize, Default)]
struct FormValues {
    quantity: i64,
    email: String,
    coupon: String,
    /// The buyer's answers to the product's input fields, kept on error.
    fields: std::collections::BTreeMap<String, String>,
}

fn product_page(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    p: &ProductView,
    form: FormValues,
    chosen: Option<&str>,
    error: Option<String>,
) -> Response {
    // What the buyer typed stays in the form (a refused quantity is explained, not changed);
    // a fresh page starts at the smallest order.
    let qty = if form.quantity == 0 {
        i64::from(p.min_quantity)
    } else {
        form.quantity
    };
    let unit = initial_total(p, 1);
    respond(
        state,
        ctx,
        status,
        if error.is_some() {
            Caching::NoStore
        } else {
            Caching::Revalidate
        },
        "product.html",
        context! {
            product => p,
            methods => method_views(state, ctx, p, chosen),
            inapp_guide => inapp_guide(state, ctx, p),
            form => context! { quantity => qty, email => form.email, coupon => form.coupon, fields => form.fields },
            unit => unit,
            error => error,
        },
    )
}

/// The total the server will charge for `qty`, as the page first shows it.
fn initial_total(p: &ProductView, qty: i64) -> String {
    let Ok(cur) = kami_core::Currency::parse(&p.currency) else {
        return String::new();
    };
    let unit = kami_core::PriceTiers::parse(&p.tiers_data)
        .ok()
        .and_then(|t| {
            t.tiers()
                .iter()
                .rev()
                .find(|t| i64::from(t.min_quantity()) <= qty)
                .map(|t| t.unit_minor())
        })
        .unwrap_or(p.price_minor);
    unit.checked_mul(qty)
        .and_then(|m| kami_core::Money::new(m, cur).ok())
        .map(format_money)
        .unwrap_or_default()
}

pub async fn product(State(state): St, ctx: Ctx, Path(slug): Path<String>) -> Response {
    match find_product(&state, &slug).await {
        Ok(Some(p)) => product_page(
            &state,
            &ctx,
            StatusCode::OK,
            &p,
            FormValues::default(),
            None,
            None,
        ),
        Ok(None) => not_found(&state, &ctx),
        Err(e) => internal(&state, &ctx, e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OrderForm {
    quantity: String,
    email: String,
    query_password: String,
    method: String,
    coupon: String,
}

/// The input-field answers of a form body (`field.NAME=VALUE`), only for the product's fields.
fn field_answers(body: &[u8], p: &ProductView) -> std::collections::BTreeMap<String, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("field.")?;
            p.input_fields
                .iter()
                .any(|f| f.name == name)
                .then(|| (name.to_owned(), v))
        })
        .filter(|(_, v)| !v.trim().is_empty())
        .collect()
}

/// The value a coupon refusal's sentence needs (a currency, a minimum amount), if any.
fn coupon_detail(r: &kami_core::CouponRefusal) -> String {
    match r {
        kami_core::CouponRefusal::WrongCurrency(c) => c.code().to_owned(),
        kami_core::CouponRefusal::BelowMinimum(m) => format_money(*m),
        _ => String::new(),
    }
}

/// The buyer message for an API error code, from the catalogue.
fn error_text(state: &AppState, ctx: &Ctx, e: &ApiError) -> String {
    let key = format!("error.{}", e.code);
    let text = state.theme.text(ctx.locale, &key, &[]);
    if text == key {
        state.theme.text(ctx.locale, "error.generic", &[])
    } else {
        text
    }
}

pub async fn place(State(state): St, ctx: Ctx, Path(slug): Path<String>, body: Bytes) -> Response {
    let p = match find_product(&state, &slug).await {
        Ok(Some(p)) => p,
        Ok(None) => return not_found(&state, &ctx),
        Err(e) => return internal(&state, &ctx, e),
    };
    if ctx.cross_site {
        return refused(&state, &ctx, StatusCode::FORBIDDEN, "cross_site");
    }
    // The input-field answers (`field.NAME`) are read apart; the form ignores them.
    let form: OrderForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let answers = field_answers(&body, &p);
    let quantity = form.quantity.trim().parse::<i64>().unwrap_or(0);
    let values = FormValues {
        quantity,
        email: form.email.trim().chars().take(254).collect(),
        coupon: form.coupon.trim().chars().take(32).collect(),
        fields: answers.clone(),
    };
    let fail = |status: StatusCode, text: String| {
        product_page(
            &state,
            &ctx,
            status,
            &p,
            FormValues {
                quantity: values.quantity,
                email: values.email.clone(),
                coupon: values.coupon.clone(),
                fields: values.fields.clone(),
            },
            Some(form.method.as_str()),
            Some(text),
        )
    };
    if let (Some(app), Ok(m)) = (ctx.in_app, Method::parse(&form.method)) {
        if app.blocks(m) {
            return message(
                &state,
                &ctx,
                StatusCode::OK,
                "open_in_browser",
                context! { app => app.as_str(), method => m.as_str(), slug => p.slug.as_str() },
            );
        }
    }
    // The order rate, the pending caps and the block lists are the checkout service's: the
    // JSON API and this form share them.
    let input = OrderInput {
        product: slug,
        quantity,
        email: form.email,
        method: form.method.clone(),
        query_password: Some(form.query_password).filter(|p| !p.is_empty()),
        device: if ctx.mobile {
            Device::Mobile
        } else {
            Device::Pc
        },
        user_agent: Some(ctx.user_agent.clone()).filter(|u| !u.is_empty()),
        locale: ctx.locale,
        client_ip: ctx.ip,
        fields: answers,
        coupon: Some(form.coupon.clone()),
    };
    let placed = match place_order(&state, input).await {
        Ok(p) => p,
        // Each coupon refusal has its own sentence in both languages.
        Err(ServiceError::Store(StoreError::InvalidCoupon(r))) => {
            let text = state.theme.text(
                ctx.locale,
                &format!("coupon.refused.{}", r.reason()),
                &[("detail", coupon_detail(&r))],
            );
            return fail(StatusCode::UNPROCESSABLE_ENTITY, text);
        }
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_server_error() {
                tracing::warn!("order from page: {}", e.message);
            }
            if e.code == "blocked" {
                return refused(&state, &ctx, e.status, "blocked");
            }
            let text = if e.code == "invalid_quantity" {
                state.theme.text(
                    ctx.locale,
                    "error.quantity_refused",
                    &[
                        ("n", form.quantity.trim().chars().take(20).collect()),
                        ("min", p.min_quantity.to_string()),
                        ("max", p.max_quantity.to_string()),
                    ],
                )
            } else if e.code == "invalid_fields" || e.code == "invalid_coupon" {
                // The store's sentence names the field (or the code's problem).
                e.message.clone()
            } else {
                error_text(&state, &ctx, &e)
            };
            return with_retry_after(fail(e.status, text), e.retry_after);
        }
    };
    let (action, target) = crate::services::payer::stored_action(&placed.action);
    if let Err(e) = state
        .store
        .set_pay_action(&placed.order_no, action, &target)
        .await
    {
        // The order stands; the page can still follow it, only without the QR code.
        tracing::error!(order = %placed.order_no, "saving the payment action: {e}");
    }
    state.catalog.invalidate();
    let token = placed.token.expose();
    // The wallet's sign-in first (WeChat OAuth before JSAPI), in this window: it comes back
    // to the order page, which the cookie below opens.
    let location = match &placed.action {
        PaymentAction::Authorize { url } => url.clone(),
        _ => format!("/orders/{}?t={}", placed.order_no, token),
    };
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    // The cookie holds order tokens: an https shop never lets it travel in clear text.
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{ORDERS_COOKIE}={}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax{secure}",
        ctx.remember_order(placed.order_no.as_str(), token)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// ---------------------------------------------------------------------------------------------
// Checkout / order page
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct OrderQuery {
    t: Option<String>,
    /// Long-poll (page script): wait up to this many seconds while the status is `since`.
    wait: Option<u64>,
    since: Option<String>,
    /// Answer with the order section only (page script).
    fragment: Option<u8>,
    /// The buyer's "I have paid" just asked the channel (`1`), or was pressed again too soon
    /// (`wait`).
    checked: Option<String>,
    /// A method switch failed (`failed`).
    switch: Option<String>,
}

/// Read an order and whether the presented (or remembered) token opens it in full.
pub(super) async fn open_order(
    state: &AppState,
    ctx: &Ctx,
    order_no: &str,
    presented: Option<&str>,
) -> Result<Option<(Order, Option<String>)>, kami_store::StoreError> {
    let Ok(no) = OrderNo::parse(order_no) else {
        return Ok(None);
    };
    let Some(order) = state.store.order(&no).await? else {
        return Ok(None);
    };
    let candidates = presented
        .map(str::to_owned)
        .into_iter()
        .chain(ctx.token_for(no.as_str()));
    for t in candidates {
        if SecretToken::from_presented(&t).matches(&order.access_token_hash) {
            return Ok(Some((order, Some(t))));
        }
    }
    Ok(Some((order, None)))
}

/// Whether a status can still change by itself (payment or delivery still to come).
fn is_open(s: OrderStatus) -> bool {
    matches!(s, OrderStatus::Pending | OrderStatus::Paid)
}

pub async fn order(
    State(state): St,
    ctx: Ctx,
    Path(order_no): Path<String>,
    Query(q): Query<OrderQuery>,
) -> Response {
    let opened = match open_order(&state, &ctx, &order_no, q.t.as_deref()).await {
        Ok(Some(o)) => o,
        Ok(None) => return not_found(&state, &ctx),
        Err(e) => return internal(&state, &ctx, e),
    };
    let (mut order, token) = opened;
    if token.is_some() {
        let since = q
            .since
            .clone()
            .unwrap_or_else(|| order.status.as_str().to_owned());
        let wait = Duration::from_secs(q.wait.unwrap_or(0));
        let no = match OrderNo::parse(order.order_no.as_str()) {
            Ok(no) => no,
            Err(e) => return internal(&state, &ctx, e),
        };
        order = match orders::wait_while(&state, &no, order, wait, |o| {
            o.status.as_str() == since && is_open(o.status)
        })
        .await
        {
            Ok(o) => o,
            Err(e) => return internal(&state, &ctx, e),
        };
    }
    let mail = match &token {
        Some(_) => mail_state(&state, &order).await,
        None => "hidden",
    };
    // The product's own prices decide which methods a switch may offer: looked up only for
    // a page that offers one (pending, with the token), not for every view of the order.
    let own = match (&token, order.status) {
        (Some(_), OrderStatus::Pending) => {
            match find_product(&state, order.product_slug.as_str()).await {
                Ok(Some(p)) => p.own_prices,
                _ => OwnPrices::default(),
            }
        }
        _ => OwnPrices::default(),
    };
    let mut view = order_view(&state, &order, &own, token.as_deref(), mail);
    if view.full && order.status == OrderStatus::Pending {
        view.checked = match q.checked.as_deref() {
            Some("1") => Some("asked"),
            Some("wait") => Some("wait"),
            _ => None,
        };
        view.switch_failed = q.switch.as_deref() == Some("failed");
        // Not the methods this in-app browser cannot pay with.
        if let Some(app) = ctx.in_app {
            view.switch_methods
                .retain(|m| Method::parse(m).is_ok_and(|m| !app.blocks(m)));
        }
    }
    let name = if q.fragment == Some(1) {
        "order_body.html"
    } else {
        "order.html"
    };
    respond(
        &state,
        &ctx,
        StatusCode::OK,
        Caching::NoStore,
        name,
        context! { order => view },
    )
}

/// What the order page says about the delivery mail.
async fn mail_state(state: &AppState, order: &Order) -> &'static str {
    if !matches!(
        order.status,
        OrderStatus::Delivered | OrderStatus::Fulfilled
    ) {
        return "none";
    }
    super::mail_line(state, order).await
}

#[derive(Serialize)]
struct OrderView {
    no: String,
    status: &'static str,
    full: bool,
    product_title: String,
    product_slug: String,
    quantity: i64,
    amount: String,
    /// What the buyer is charged when the channel takes another currency.
    charge: Option<String>,
    method: String,
    created_at: String,
    /// `2026-05-01 08:00:00` (UTC), as the page shows it.
    created_text: String,
    /// The coupon code and what it took off.
    coupon: Option<String>,
    discount: Option<String>,
    /// Seconds left to pay (pending only), and as `m:ss`.
    remaining: i64,
    remaining_text: String,
    pay: Option<PayView>,
    keys: Option<Vec<String>>,
    /// What the seller delivered by hand (a manual order), shown with the token only.
    fulfilment: Option<String>,
    token: Option<String>,
    poll: bool,
    mail: &'static str,
    email_masked: String,
    /// What the last "I have paid" did: `asked` or `wait`.
    checked: Option<&'static str>,
    /// Pending, with the token: the other methods the buyer may switch to.
    switch_methods: Vec<&'static str>,
    switch_failed: bool,
}

#[derive(Serialize)]
struct PayView {
    action: String,
    qr_svg: Option<String>,
    qr_text: Option<String>,
    url: Option<String>,
    /// Demo only: the simulator's payer page for a QR code.
    sim_link: Option<String>,
    /// JSAPI: the `getBrandWCPayRequest` parameters (JSON) for the page script.
    jsapi: Option<String>,
    /// Demo and tests only: the stand-in `WeixinJSBridge` script.
    bridge: Option<String>,
}

/// `own`: the product's own prices, for which methods can charge it.
fn order_view(
    state: &AppState,
    o: &Order,
    own: &OwnPrices,
    token: Option<&str>,
    mail: &'static str,
) -> OrderView {
    let full = token.is_some();
    let remaining = ((o.expires_at - state.now_ms()) / 1000).max(0);
    let pending = o.status == OrderStatus::Pending;
    let pay = match (&o.pay_action, full && pending) {
        (Some((action, target)), true) => Some(match action.as_str() {
            "qr" => PayView {
                action: "qr".into(),
                qr_svg: qr_svg(target),
                qr_text: Some(target.clone()),
                url: None,
                sim_link: state.qr_link.as_ref().and_then(|link| link(target)),
                jsapi: None,
                bridge: None,
            },
            "jsapi" => PayView {
                action: "jsapi".into(),
                qr_svg: None,
                qr_text: None,
                url: None,
                sim_link: None,
                jsapi: Some(target.clone()),
                bridge: state.jsapi_bridge.clone(),
            },
            _ => PayView {
                action: "redirect".into(),
                qr_svg: None,
                qr_text: None,
                url: Some(target.clone()),
                sim_link: None,
                jsapi: None,
                bridge: None,
            },
        }),
        _ => None,
    };
    OrderView {
        no: o.order_no.to_string(),
        status: o.status.as_str(),
        full,
        product_title: o.product_title.clone(),
        product_slug: o.product_slug.to_string(),
        quantity: o.quantity,
        amount: format_money(o.amount),
        charge: o.charge.map(format_money),
        method: o.method.to_string(),
        created_at: crate::time::rfc3339(o.created_at),
        created_text: crate::time::rfc3339(o.created_at - o.created_at.rem_euclid(1000))
            .trim_end_matches('Z')
            .replace('T', " "),
        coupon: o.coupon.as_ref().map(|c| c.code.clone()),
        discount: o.coupon.as_ref().map(|c| format_money(c.discount)),
        remaining,
        remaining_text: format!("{}:{:02}", remaining / 60, remaining % 60),
        pay,
        keys: if full { o.cards.clone() } else { None },
        fulfilment: if full { o.fulfilment.clone() } else { None },
        token: token.map(str::to_owned),
        poll: full && is_open(o.status),
        mail,
        email_masked: mask_email(o.email.as_str()),
        checked: None,
        switch_methods: if full && pending {
            let fx = state.settings().fx.clone();
            state
                .channels
                .methods_for(state.now_ms(), o.amount.currency(), own, &fx)
                .into_iter()
                .filter(|m| *m != o.method)
                .map(Method::as_str)
                .collect()
        } else {
            Vec::new()
        },
        switch_failed: false,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckForm {
    t: String,
}

/// `POST /orders/{no}/check`: the buyer's "I have paid". Asks the channel now (at most once
/// every few seconds per order) and applies what it confirms, exactly as a notification; then
/// back to the order page, which says that it asked. Needs the order's token.
pub async fn check_payment(
    State(state): St,
    ctx: Ctx,
    Path(order_no): Path<String>,
    body: Bytes,
) -> Response {
    if ctx.cross_site {
        return refused(&state, &ctx, StatusCode::FORBIDDEN, "cross_site");
    }
    let form: CheckForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let presented = Some(form.t.as_str()).filter(|t| !t.is_empty());
    let (order, token) = match open_order(&state, &ctx, &order_no, presented).await {
        Ok(Some((o, Some(t)))) => (o, t),
        Ok(_) => return not_found(&state, &ctx),
        Err(e) => return internal(&state, &ctx, e),
    };
    let checked = match OrderNo::parse(order.order_no.as_str()) {
        Ok(no) => match order_actions::buyer_check(&state, &no).await {
            Ok(BuyerCheck::TooSoon) => "wait",
            Ok(BuyerCheck::Asked | BuyerCheck::NotPending) => "1",
            Err(e) => {
                // The page still shows the order as it is; the periodic checks go on.
                tracing::warn!(order = %no, "buyer's payment check: {e}");
                "1"
            }
        },
        Err(e) => return internal(&state, &ctx, e),
    };
    let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let location = format!("/orders/{}?t={token}&checked={checked}", order.order_no);
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `alice@example.com` → `a***@example.com`.
fn mask_email(e: &str) -> String {
    match e.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Where a demo buyer "scans" a QR code: the simulators' payer pages.
pub async fn keys_txt(
    State(state): St,
    ctx: Ctx,
    Path(order_no): Path<String>,
    Query(q): Query<OrderQuery>,
) -> Response {
    let (order, token) = match open_order(&state, &ctx, &order_no, q.t.as_deref()).await {
        Ok(Some(o)) => o,
        Ok(None) => return not_found(&state, &ctx),
        Err(e) => return internal(&state, &ctx, e),
    };
    let (Some(_), Some(keys)) = (token, order.cards.as_ref()) else {
        return not_found(&state, &ctx);
    };
    let mut body = keys.join("\r\n");
    body.push_str("\r\n");
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.txt\"", order.order_no))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    resp
}

// ---------------------------------------------------------------------------------------------
// Lookup
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct RecentView {
    no: String,
    status: &'static str,
    product_title: String,
    amount: String,
    href: String,
}

async fn recent_views(state: &AppState, ctx: &Ctx) -> Vec<RecentView> {
    let mut out = Vec::new();
    for (no, token) in ctx.recent_orders() {
        let Ok(order_no) = OrderNo::parse(&no) else {
            continue;
        };
        let Ok(Some(o)) = state.store.order(&order_no).await else {
            continue;
        };
        if !SecretToken::from_presented(&token).matches(&o.access_token_hash) {
            continue;
        }
        out.push(RecentView {
            href: format!("/orders/{no}?t={token}"),
            no,
            status: o.status.as_str(),
            product_title: o.product_title,
            amount: format_money(o.amount),
        });
    }
    out
}

pub async fn lookup_form(State(state): St, ctx: Ctx) -> Response {
    lookup_page(&state, &ctx, context! { searched => false, q => "" }).await
}

/// The lookup page, with this browser's recent orders.
async fn lookup_page(state: &AppState, ctx: &Ctx, vars: Value) -> Response {
    let recent = recent_views(state, ctx).await;
    respond(
        state,
        ctx,
        StatusCode::OK,
        Caching::NoStore,
        "lookup.html",
        context! { recent => recent, ..vars },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LookupForm {
    q: String,
    password: String,
}

pub async fn lookup(State(state): St, ctx: Ctx, body: Bytes) -> Response {
    let limited = |r: RetryAfter| {
        with_retry_after(
            refused(&state, &ctx, StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Some(r.0),
        )
    };
    if let Err(r) = state.limits.allow_lookup(ctx.ip, state.now_ms()) {
        return limited(r);
    }
    if ctx.cross_site {
        return refused(&state, &ctx, StatusCode::FORBIDDEN, "cross_site");
    }
    let form: LookupForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let q = form.q.trim().to_owned();
    // An order number or an email: nothing longer is searched, or remembered by a limiter.
    if q.chars().count() > lookup::MAX_QUERY_CHARS {
        return refused(&state, &ctx, StatusCode::BAD_REQUEST, "search_too_long");
    }
    if let Err(r) = state.limits.allow_lookup_target(&q, ctx.ip, state.now_ms()) {
        return limited(r);
    }
    let matched = match lookup::find(&state, &q, form.password, ctx.ip).await {
        Ok(m) => m,
        Err(e) => {
            let e = ApiError::from(e);
            if let Some(s) = e.retry_after {
                return limited(RetryAfter(s));
            }
            return internal(&state, &ctx, e.message);
        }
    };
    let mut found: Vec<_> = matched
        .iter()
        .map(|o| order_view(&state, o, &OwnPrices::default(), Some(""), "hidden"))
        .collect();
    for v in &mut found {
        // Opened by password: no token to hand out, no live polling.
        v.token = None;
        v.poll = false;
        v.pay = None;
    }
    lookup_page(
        &state,
        &ctx,
        context! { searched => true, found => found, q => q },
    )
    .await
}
