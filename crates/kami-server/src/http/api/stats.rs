//! `GET /api/v1/admin/stats?from=YYYY-MM-DD&to=YYYY-MM-DD`: the shop's numbers per local day
//! and per channel (definitions in `services::stats`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::error::ApiResult;
use crate::http::extract::AdminAuth;
use crate::services::stats::{self, DayRange, DayStats};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct StatsQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub async fn stats(
    State(state): State<Arc<AppState>>,
    _admin: AdminAuth,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let range = DayRange::parse(&q.from, &q.to)?;
    let s = stats::stats(&state, range).await?;
    let channels: Vec<Value> = s
        .channels
        .iter()
        .map(|c| {
            json!({
                "channel": c.channel,
                "created": c.created,
                "paid": c.paid,
                "success_rate": c.success_rate(),
                "p95_ms": c.p95_ms,
                "calls": {"total": c.calls, "ok": c.calls_ok, "error": c.calls_error,
                          "timeout": c.calls_timeout},
            })
        })
        .collect();
    Ok(Json(json!({
        "timezone": s.timezone,
        "from": s.range.from.to_string(),
        "to": s.range.to.to_string(),
        "total": numbers(&s.total),
        "days": s.days.iter().map(|d| {
            let mut v = numbers(d);
            v["date"] = json!(d.date.map(|d| d.to_string()));
            v
        }).collect::<Vec<_>>(),
        "channels": channels,
    })))
}

/// One day's (or the total's) numbers; money as `{CURRENCY: minor units}`.
fn numbers(d: &DayStats) -> Value {
    let money = |m: &BTreeMap<String, i64>| json!(m);
    json!({
        "created": d.created,
        "paid": d.paid,
        "conversion": d.conversion(),
        "revenue": money(&d.revenue),
        "refunded": money(&d.refunded),
        "net": money(&d.net()),
    })
}
