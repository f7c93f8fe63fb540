//! The JSON API (DESIGN 4.3): buyer, admin, gateway and operations endpoints.

mod admin;
mod admin_audit;
mod admin_orders;
mod admin_users;
mod alerts;
mod buyer;
mod catalog;
mod channels;
mod coupons;
mod gateway;
mod ops;
mod reconciliations;
mod seller;
mod settings;
mod stats;
mod switch;

pub(crate) use admin::import_stream;
pub(crate) use admin_audit::csv_attachment;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use axum::Router;

use super::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/products", get(buyer::products))
        .route("/api/v1/orders", post(buyer::create_order))
        .route("/api/v1/orders/{order_no}", get(buyer::get_order))
        .route("/api/v1/orders/{order_no}/switch", post(switch::switch))
        .route(
            "/api/v1/admin/products",
            get(seller::list_products).post(admin::create_product),
        )
        .route(
            "/api/v1/admin/products/{slug}",
            axum::routing::patch(seller::update_product).delete(seller::delete_product),
        )
        .route(
            "/api/v1/admin/products/{slug}/cards",
            // Streamed (any size, memory for one batch); the other routes keep the default 2 MB.
            post(admin::import_cards)
                .layer(DefaultBodyLimit::disable())
                .get(seller::list_cards)
                .delete(seller::delete_cards),
        )
        .route(
            "/api/v1/admin/products/{slug}/cards/{id}",
            delete(seller::delete_card),
        )
        .route(
            "/api/v1/admin/products/{slug}/cards.csv",
            get(seller::export_cards),
        )
        .route(
            "/api/v1/admin/products/{slug}/batches",
            get(seller::list_batches),
        )
        .route(
            "/api/v1/admin/coupons",
            get(coupons::list).post(coupons::create),
        )
        .route(
            "/api/v1/admin/coupons/{code}",
            patch(coupons::update).delete(coupons::delete),
        )
        .route("/api/v1/admin/orders", get(admin::list_orders))
        .route("/api/v1/admin/orders/{order_no}", get(admin::get_order))
        .route(
            "/api/v1/admin/orders/{order_no}/refund",
            post(admin::refund),
        )
        .route(
            "/api/v1/admin/orders/{order_no}/fulfil",
            post(admin::fulfil),
        )
        .route(
            "/api/v1/admin/orders/{order_no}/deliver",
            post(admin::deliver),
        )
        .route("/api/v1/admin/audit", get(admin_audit::list))
        .route("/api/v1/admin/audit.csv", get(admin_audit::export))
        .route(
            "/api/v1/admin/users",
            get(admin_audit::users).post(admin_audit::add_user),
        )
        .route(
            "/api/v1/admin/orders/{order_no}/check-payment",
            post(admin_orders::check_payment),
        )
        .route(
            "/api/v1/admin/orders/{order_no}/cancel",
            post(admin_orders::cancel),
        )
        .route(
            "/api/v1/admin/orders/{order_no}/resend-mail",
            post(admin_orders::resend_mail),
        )
        .route("/api/v1/admin/stats", get(stats::stats))
        // Issue 10 parts 3 and 9: pictures, order, categories, admin users.
        .route(
            "/api/v1/admin/products/{slug}/image",
            // Read by `catalog::read_capped` (5 MB) rather than the default 2 MB limit.
            axum::routing::put(catalog::put_image)
                .layer(DefaultBodyLimit::disable())
                .delete(catalog::delete_image),
        )
        .route(
            "/api/v1/admin/products/{slug}/move",
            post(catalog::move_product),
        )
        .route(
            "/api/v1/admin/categories",
            get(catalog::list_categories).post(catalog::create_category),
        )
        .route(
            "/api/v1/admin/categories/{name}",
            patch(catalog::update_category).delete(catalog::delete_category),
        )
        .route(
            "/api/v1/admin/categories/{name}/move",
            post(catalog::move_category),
        )
        .route(
            "/api/v1/admin/users/{name}",
            patch(admin_users::update).delete(admin_users::remove),
        )
        .route(
            "/pay/notify/{channel_id}",
            get(gateway::notify).post(gateway::notify),
        )
        .route("/pay/return/{channel_id}", get(gateway::return_page))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        // Channels (issue 10 part 6).
        .route(
            "/api/v1/admin/channels",
            get(channels::list).post(channels::create),
        )
        .route(
            "/api/v1/admin/channels/{id}",
            get(channels::get)
                .patch(channels::update)
                .delete(channels::delete),
        )
        .route("/api/v1/admin/channels/{id}/test", post(channels::test))
        // Alerts (issue 11 part 3).
        .route(
            "/api/v1/admin/alerts/targets",
            get(alerts::list).post(alerts::create),
        )
        .route(
            "/api/v1/admin/alerts/targets/{id}",
            get(alerts::get)
                .patch(alerts::update)
                .delete(alerts::delete),
        )
        .route("/api/v1/admin/alerts/targets/{id}/test", post(alerts::test))
        .route("/api/v1/admin/alerts/conditions", get(alerts::conditions))
        .route("/api/v1/admin/alerts/deliveries", get(alerts::deliveries))
        .route("/api/v1/admin/channels/{id}/stats", get(channels::stats))
        // Settings (issue 10 part 8).
        .route(
            "/api/v1/admin/settings",
            get(settings::get).patch(settings::patch),
        )
        .route(
            "/api/v1/admin/settings/test-mail",
            post(settings::test_mail),
        )
        // Reconciliation (issue 11 part 4).
        .route(
            "/api/v1/admin/reconciliations",
            get(reconciliations::list).post(reconciliations::run),
        )
        .route(
            "/api/v1/admin/reconciliations/{id}",
            get(reconciliations::get),
        )
        .route(
            "/api/v1/admin/reconciliations/{id}/items/{item}/handle",
            post(reconciliations::handle),
        )
}

/// The API's 404 for unknown paths.
pub(crate) fn not_found_json() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}
