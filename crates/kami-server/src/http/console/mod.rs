//! The seller console at `/admin`: server-rendered pages in the storefront's theme machinery
//! (templates `console/*.html`, the same catalogues and language switch), a small script for
//! confirmations, no SPA. Sign-in and sessions are `services::console`; this module only
//! guards (session cookie, CSRF token, cross-site checks) and renders.

mod alerts;
mod audit;
mod cards;
mod channel_measures;
mod channels;
#[allow(clippy::result_large_err)]
mod coupons;
// The guards return the page to answer with as their error: a refusal is a response, built
// once, on the way out; its size does not matter there.
mod categories;
mod chart;
mod dashboard;
#[allow(clippy::result_large_err)]
mod guard;
mod login;
mod order_forms;
mod order_page;
mod orders;
mod product_media;
mod product_new;
mod products;
mod reconciliations;
#[allow(clippy::result_large_err)]
mod security;
mod upload;
mod users;
// Settings (issue 10 part 8).
mod settings;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Value};

use super::web::request::{page, Caching, Ctx};
use crate::i18n::Locale;
use crate::services::ServiceError;
use crate::state::AppState;

pub use guard::SESSION_COOKIE;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(dashboard::page))
        .route("/admin/", get(dashboard::page))
        .route("/admin/login", get(login::form).post(login::submit))
        .route(
            "/admin/login/code",
            get(login::code_form).post(login::code_submit),
        )
        .route("/admin/logout", post(login::logout))
        // orders
        .route("/admin/orders", get(orders::list))
        .route("/admin/orders.csv", get(orders::csv))
        .route("/admin/orders/{no}", get(order_page::page))
        .route("/admin/orders/{no}/{action}", post(order_forms::act))
        .route("/admin/security", get(security::page))
        .route("/admin/security/sessions/revoke", post(security::revoke))
        .route(
            "/admin/security/sessions/revoke-others",
            post(security::revoke_others),
        )
        .route("/admin/security/totp/begin", post(security::totp_begin))
        .route("/admin/security/totp/confirm", post(security::totp_confirm))
        .route("/admin/security/totp/disable", post(security::totp_disable))
        .route("/admin/audit", get(audit::page))
        .route("/admin/audit.csv", get(audit::export))
        .route("/admin/users", get(users::page).post(users::add))
        .route("/admin/products", get(products::list))
        .route(
            "/admin/products/{slug}",
            get(products::edit).post(products::save),
        )
        .route(
            "/admin/products/{slug}/visibility",
            post(products::visibility),
        )
        .route("/admin/products/{slug}/delete", post(products::remove))
        .route("/admin/products/{slug}/cards", get(cards::page))
        .route(
            "/admin/products/{slug}/cards/import",
            // Streamed like the API's import: any size, memory for one batch.
            post(cards::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/admin/products/{slug}/cards/delete", post(cards::delete))
        .route("/admin/products/{slug}/cards.csv", get(cards::export))
        // Coupons (issue 10 part 7).
        .route("/admin/coupons", get(coupons::page).post(coupons::create))
        .route(
            "/admin/coupons/{code}",
            get(coupons::edit).post(coupons::update),
        )
        .route("/admin/coupons/{code}/delete", post(coupons::delete))
        // Channels (issue 10 part 6).
        .route(
            "/admin/channels",
            get(channels::list).post(channels::create),
        )
        .route("/admin/channels/new", get(channels::new_form))
        .route(
            "/admin/channels/{id}/edit",
            get(channels::edit).post(channels::save),
        )
        .route("/admin/channels/{id}/enabled", post(channels::toggle))
        .route("/admin/channels/{id}/delete", post(channels::delete))
        .route("/admin/channels/{id}/test", post(channels::test))
        // Issue 10 parts 3 and 9: new products, pictures, order, categories, users.
        .route(
            "/admin/products/new",
            get(product_new::form)
                .post(product_new::create)
                .layer(axum::extract::DefaultBodyLimit::max(upload::BODY_LIMIT)),
        )
        .route(
            "/admin/products/{slug}/image",
            post(product_media::upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload::BODY_LIMIT)),
        )
        .route(
            "/admin/products/{slug}/image/delete",
            post(product_media::remove),
        )
        .route("/admin/products/{slug}/move", post(product_media::move_one))
        .route(
            "/admin/categories",
            get(categories::page).post(categories::create),
        )
        .route("/admin/categories/rename", post(categories::rename))
        .route("/admin/categories/move", post(categories::move_one))
        .route("/admin/categories/delete", post(categories::delete))
        .route("/admin/users/{action}", post(users::act))
        // Settings (issue 10 part 8).
        .route("/admin/settings", get(settings::page).post(settings::save))
        .route("/admin/settings/reset", post(settings::reset))
        .route("/admin/settings/test-mail", post(settings::test_mail))
        // Alerts (issue 11 part 3).
        .route("/admin/alerts", get(alerts::page))
        .route("/admin/alerts/targets", post(alerts::create))
        .route("/admin/alerts/targets/{id}", post(alerts::save))
        .route("/admin/alerts/targets/{id}/delete", post(alerts::delete))
        .route("/admin/alerts/targets/{id}/test", post(alerts::test))
        // Reconciliation (issue 11 part 4).
        .route(
            "/admin/reconciliations",
            get(reconciliations::list).post(reconciliations::run),
        )
        .route("/admin/reconciliations/{id}", get(reconciliations::page))
        .route(
            "/admin/reconciliations/{id}/items/{item}/handle",
            post(reconciliations::handle),
        )
}

/// A navigation entry: only pages that exist are listed.
struct Nav {
    key: &'static str,
    href: &'static str,
}

const NAV: &[Nav] = &[
    Nav {
        key: "dashboard",
        href: "/admin",
    },
    Nav {
        key: "orders",
        href: "/admin/orders",
    },
    Nav {
        key: "products",
        href: "/admin/products",
    },
    Nav {
        key: "coupons",
        href: "/admin/coupons",
    },
    Nav {
        key: "audit",
        href: "/admin/audit",
    },
    Nav {
        key: "users",
        href: "/admin/users",
    },
    Nav {
        key: "security",
        href: "/admin/security",
    },
    Nav {
        key: "channels",
        href: "/admin/channels",
    },
    Nav {
        key: "alerts",
        href: "/admin/alerts",
    },
    Nav {
        key: "reconciliations",
        href: "/admin/reconciliations",
    },
    Nav {
        key: "settings",
        href: "/admin/settings",
    },
];

/// Variables every console page gets: the shop, languages, navigation, the signed-in user
/// and the form token.
fn base(state: &AppState, ctx: &Ctx, user: Option<&guard::Admin>, current: &str) -> Value {
    let langs: Vec<Value> = Locale::ALL
        .iter()
        .map(|l| {
            context! {
                tag => l.tag(),
                current => *l == ctx.locale,
                href => if ctx.query_without_lang.is_empty() {
                    format!("?lang={}", l.tag())
                } else {
                    format!("?{}&lang={}", ctx.query_without_lang, l.tag())
                },
            }
        })
        .collect();
    let nav: Vec<Value> = NAV
        .iter()
        .map(|n| context! { key => n.key, href => n.href, current => n.key == current })
        .collect();
    context! {
        shop => context! { name => state.settings().shop.name.as_str() },
        langs => langs,
        nav => if user.is_some() { nav } else { Vec::new() },
        user => user.map(|u| u.session.user_name.as_str()),
        csrf => user.map(|u| u.csrf.as_str()),
    }
}

/// Render a console page (never cached, never framed).
fn render(
    state: &AppState,
    ctx: &Ctx,
    user: Option<&guard::Admin>,
    status: StatusCode,
    name: &str,
    current: &str,
    vars: Value,
) -> Response {
    match state.theme.render(
        name,
        ctx.locale,
        context! { ..vars, ..base(state, ctx, user, current) },
    ) {
        Ok(html) => page(ctx, status, Caching::NoStore, html),
        Err(e) => {
            tracing::error!("rendering {name}: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A console message page (`kind`: `forbidden`, `not_found`, `internal`, ...).
fn message(
    state: &AppState,
    ctx: &Ctx,
    user: Option<&guard::Admin>,
    status: StatusCode,
    kind: &str,
) -> Response {
    render(
        state,
        ctx,
        user,
        status,
        "console/message.html",
        "",
        context! { kind => kind },
    )
}

/// A service refusal as a console page: internal causes are logged, never shown.
fn failed(state: &AppState, ctx: &Ctx, user: Option<&guard::Admin>, e: ServiceError) -> Response {
    match e {
        ServiceError::NotFound { .. }
        | ServiceError::Store(kami_store::StoreError::ProductNotFound) => {
            message(state, ctx, user, StatusCode::NOT_FOUND, "not_found")
        }
        other => {
            tracing::error!("console: {other}");
            message(
                state,
                ctx,
                user,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            )
        }
    }
}

/// `303 See Other` to a local path.
fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A form body's fields (`application/x-www-form-urlencoded`); a malformed body has none.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Where to go after signing in: only a local console path, else the overview (no open
/// redirect: `//evil.example`, `/\evil`, `https://…` and anything outside `/admin` are refused).
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with("/admin")
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 512
        && matches!(next.as_bytes().get(6), None | Some(b'/' | b'?'));
    if local {
        next
    } else {
        "/admin"
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_console_path_only() {
        for ok in [
            "/admin",
            "/admin/security",
            "/admin?lang=en",
            "/admin/security?x=1",
        ] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "https://evil.example/admin",
            "//evil.example",
            "/\\evil.example",
            "/admin\\..\\x",
            "/adminx",
            "/",
            "",
            "javascript:alert(1)",
            "/admin/\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_next(bad), "/admin", "{bad:?}");
        }
    }
}
