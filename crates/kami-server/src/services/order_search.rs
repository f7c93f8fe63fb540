//! The seller's order search, as typed into the console's filter form or the admin API's
//! query string: every field parsed here (one error per field), the search itself is the
//! store's (`kami-store/src/orders_search.rs`). Dates are whole days in UTC: the shop has no
//! time zone setting, and the console says so next to the fields.

use bytes::Bytes;
use futures::Stream;
use kami_core::{ChannelId, Email, Method, Millis, OrderNo, OrderStatus, Slug};
use kami_store::{Actor, Order, OrderFilter, OrderQuery, StoreError, MAX_ORDER_PAGE};
use time::macros::format_description;
use time::Date;

use super::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::rfc3339;

/// The largest page the seller may ask for.
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 50;
const DAY_MS: i64 = 86_400_000;

const _: () = assert!(MAX_LIMIT <= MAX_ORDER_PAGE);

/// The filter's fields as text (empty = not set), exactly as the query string carries them.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SearchForm {
    pub q: String,
    pub status: String,
    pub channel: String,
    pub method: String,
    pub product: String,
    pub from: String,
    pub to: String,
    pub before: String,
    pub limit: Option<u32>,
}

/// A page of results and the cursor of the next one (`None` on the last page).
pub struct SearchPage {
    pub orders: Vec<Order>,
    pub next_before: Option<String>,
}

/// The search box decides by shape: an order number, an email, else a gateway trade number.
pub fn query(q: &str) -> ServiceResult<Option<OrderQuery>> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(None);
    }
    if let Ok(no) = OrderNo::parse(q) {
        return Ok(Some(OrderQuery::OrderNo(no)));
    }
    if q.contains('@') {
        return Email::parse(q)
            .map(|e| Some(OrderQuery::Email(e)))
            .map_err(|_| ServiceError::invalid("invalid_query", "not a valid email address"));
    }
    if q.len() > 128 || q.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ServiceError::invalid(
            "invalid_query",
            "search by an order number, an email or a gateway trade number (up to 128 characters)",
        ));
    }
    Ok(Some(OrderQuery::GatewayTradeNo(q.to_owned())))
}

/// Midnight UTC of a `YYYY-MM-DD` day, in milliseconds.
fn day_start(field: &'static str, s: &str) -> ServiceResult<Option<Millis>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let date = Date::parse(s, format_description!("[year]-[month]-[day]")).map_err(|_| {
        ServiceError::invalid("invalid_date", format!("{field} must be a date YYYY-MM-DD"))
    })?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    Ok(Some(secs * 1000))
}

fn optional<T>(
    s: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    code: &'static str,
    what: &str,
) -> ServiceResult<Option<T>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    parse(s)
        .map(Some)
        .ok_or_else(|| ServiceError::invalid(code, format!("unknown {what} {s:?}")))
}

/// Parse the form into the store's filter: every field checked, nothing guessed.
pub fn filter(f: &SearchForm) -> ServiceResult<OrderFilter> {
    let created_from = day_start("from", &f.from)?;
    // `to` is inclusive: the whole of that day.
    let created_before = day_start("to", &f.to)?.map(|d| d + DAY_MS);
    if let (Some(a), Some(b)) = (created_from, created_before) {
        if a >= b {
            return Err(ServiceError::invalid(
                "invalid_date",
                "from must not be after to",
            ));
        }
    }
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ServiceError::invalid(
            "invalid_limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(OrderFilter {
        query: query(&f.q)?,
        status: optional(&f.status, OrderStatus::parse, "invalid_status", "status")?,
        channel: optional(
            &f.channel,
            |s| ChannelId::parse(s).ok(),
            "invalid_channel",
            "channel",
        )?,
        method: optional(
            &f.method,
            |s| Method::parse(s).ok(),
            "invalid_method",
            "method",
        )?,
        product: optional(
            &f.product,
            |s| Slug::parse(s).ok(),
            "invalid_product",
            "product",
        )?,
        created_from,
        created_before,
        before: optional(
            &f.before,
            |s| OrderNo::parse(s).ok(),
            "invalid_cursor",
            "cursor (before must be an order number)",
        )?,
        limit,
    })
}

/// One page of the seller's search.
pub async fn search(state: &AppState, form: &SearchForm) -> ServiceResult<SearchPage> {
    let filter = filter(form)?;
    let limit = filter.limit as usize;
    let orders = state.store.list_orders(filter).await?;
    let next_before = (orders.len() == limit)
        .then(|| orders.last().map(|o| o.order_no.to_string()))
        .flatten();
    Ok(SearchPage {
        orders,
        next_before,
    })
}

fn csv_line(o: &Order) -> String {
    use super::card_stock::csv_field;
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
        csv_field(o.order_no.as_str()),
        rfc3339(o.created_at),
        csv_field(o.product_slug.as_str()),
        csv_field(&o.product_title),
        o.quantity,
        o.amount.minor(),
        o.amount.currency().code(),
        o.status.as_str(),
        csv_field(o.channel_id.as_str()),
        o.method.as_str(),
        csv_field(o.email.as_str()),
        o.paid_at.map(rfc3339).unwrap_or_default(),
    )
}

/// The orders the filter finds, as CSV, read a page at a time while the body is sent. The
/// export is audited (by whom, which filter) before the first byte; a bad filter is an
/// error then. Cells a spreadsheet would run as a formula are defused (`card_stock::csv_field`).
pub async fn export_csv(
    state: &AppState,
    form: &SearchForm,
    actor: &Actor,
) -> ServiceResult<impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static> {
    let mut filter = filter(&SearchForm {
        limit: None,
        ..form.clone()
    })?;
    filter.limit = MAX_LIMIT;
    state
        .store
        .record_audit(
            actor.entry(
                "orders.export",
                "orders:search".to_owned(),
                None,
                Some(serde_json::to_value(form).unwrap_or_default()),
            ),
            state.now_ms(),
        )
        .await?;
    let store = state.store.clone();
    // State: the filter for the next page (`None` once the last page was sent), and whether
    // the header line went out.
    Ok(futures::stream::try_unfold(
        (Some(filter), false),
        move |(next, header_sent)| {
            let store = store.clone();
            async move {
                if !header_sent {
                    let header = Bytes::from_static(
                        b"order_no,created_at,product,title,quantity,amount,currency,status,channel,method,email,paid_at\r\n",
                    );
                    return Ok(Some((header, (next, true))));
                }
                let Some(f) = next else {
                    return Ok(None);
                };
                let page = store.list_orders(f.clone()).await?;
                if page.is_empty() {
                    return Ok(None);
                }
                let more = (page.len() == f.limit as usize)
                    .then(|| page.last().map(|o| o.order_no.clone()))
                    .flatten()
                    .map(|before| OrderFilter {
                        before: Some(before),
                        ..f
                    });
                let text: String = page.iter().map(csv_line).collect();
                Ok(Some((Bytes::from(text), (more, true))))
            }
        },
    ))
}

/// `b***@example.com`: enough to recognise a buyer, not to harvest addresses from a screen.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_decides_by_shape() {
        assert!(matches!(
            query("a@b.example"),
            Ok(Some(OrderQuery::Email(_)))
        ));
        assert!(matches!(
            query("2024052312345678"),
            Ok(Some(OrderQuery::GatewayTradeNo(_)))
        ));
        assert!(matches!(
            query("4200001234"),
            Ok(Some(OrderQuery::GatewayTradeNo(_)))
        ));
        assert!(query("not an@email").is_err());
        assert!(matches!(query("  "), Ok(None)));
    }

    #[test]
    fn dates_are_utc_days_and_to_is_inclusive() {
        let f = filter(&SearchForm {
            from: "2024-01-02".into(),
            to: "2024-01-02".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.created_from, Some(1_704_153_600_000));
        assert_eq!(f.created_before, Some(1_704_153_600_000 + DAY_MS));
        assert!(filter(&SearchForm {
            from: "2024-13-01".into(),
            ..Default::default()
        })
        .is_err());
        assert!(filter(&SearchForm {
            limit: Some(501),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("buyer@example.com"), "b***@example.com");
        assert_eq!(mask_email("x"), "***");
    }
}
