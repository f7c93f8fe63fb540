//! `/admin`: the dashboard — a period's numbers in the shop's time zone (today, 7 or 30
//! days), the daily chart, channels, and what waits for the seller.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kami_core::{Currency, Money};
use minijinja::{context, Value};

use super::chart::{self, ChartDay, ChartText};
use super::{guard, render};
use crate::http::web::request::Ctx;
use crate::services::dashboard::{self, Period, Waiting};
use crate::services::stats::DayStats;
use crate::state::AppState;
use crate::theme::format_money;

/// `¥12.30`; an amount kami cannot format (unknown currency) as minor units and code.
fn money(minor: i64, currency: &str) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| Money::new(minor, c).ok())
        .map_or_else(|| format!("{minor} {currency}"), format_money)
}

fn amounts(m: &std::collections::BTreeMap<String, i64>) -> Vec<Value> {
    m.iter()
        .map(|(c, v)| context! { currency => c, text => money(*v, c) })
        .collect()
}

/// `2025-03-10 18:00` in the shop's time zone.
fn local_time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn day_row(d: &DayStats, currencies: &BTreeSet<String>) -> Value {
    let revenue: Vec<String> = currencies
        .iter()
        .map(|c| money(d.revenue.get(c).copied().unwrap_or(0), c))
        .collect();
    context! {
        date => d.date.map(|d| d.to_string()),
        created => d.created,
        paid => d.paid,
        conversion => percent(d.conversion()),
        revenue => revenue,
        refunded => amounts(&d.refunded),
    }
}

fn waiting(w: &Waiting, tz: &jiff::tz::TimeZone) -> Value {
    let orders: Vec<Value> = w
        .orders
        .iter()
        .map(|o| {
            context! {
                order_no => o.order_no,
                product => o.product_title,
                amount => money(o.amount, &o.currency),
                created_at => local_time(o.created_at, tz),
            }
        })
        .collect();
    context! { total => w.total, orders => orders }
}

pub async fn page(State(state): State<Arc<AppState>>, ctx: Ctx) -> Response {
    let admin = match guard::require(&state, &ctx).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(&ctx.query_without_lang).unwrap_or_default();
    let period = Period::parse(super::field(&query, "period"));
    let d = match dashboard::dashboard(&state, period).await {
        Ok(d) => d,
        Err(e) => return super::failed(&state, &ctx, Some(&admin), e),
    };
    let s = &d.stats;
    let tz = state.config.shop.time_zone();
    let currencies: BTreeSet<String> = s.total.revenue.keys().cloned().collect();
    // The chart shows the currency that earned most in the period (CNY without sales).
    let chart_currency = s
        .total
        .revenue
        .iter()
        .max_by_key(|(_, v)| **v)
        .map_or("CNY", |(c, _)| c.as_str());
    let t = |key: &str| state.theme.text(ctx.locale, key, &[]);
    let (title, desc, paid, revenue) = (
        t("console.dashboard.chart_title"),
        state.theme.text(
            ctx.locale,
            "console.dashboard.chart_desc",
            &[("currency", chart_currency.to_owned())],
        ),
        t("console.dashboard.paid"),
        t("console.dashboard.revenue"),
    );
    let chart_days: Vec<ChartDay> = s
        .days
        .iter()
        .map(|day| {
            let minor = day.revenue.get(chart_currency).copied().unwrap_or(0);
            ChartDay {
                date: day.date.map(|d| d.to_string()).unwrap_or_default(),
                paid: day.paid,
                revenue: minor,
                revenue_text: money(minor, chart_currency),
            }
        })
        .collect();
    let svg = chart::daily(
        &chart_days,
        &ChartText {
            title: &title,
            desc: &desc,
            paid: &paid,
            revenue: &revenue,
        },
    );
    let channels: Vec<Value> = s
        .channels
        .iter()
        .map(|c| {
            context! {
                id => c.channel,
                created => c.created,
                paid => c.paid,
                calls => c.calls,
                success_rate => percent(c.success_rate()),
                p95_ms => c.p95_ms,
            }
        })
        .collect();
    let low_stock: Vec<Value> = d
        .low_stock
        .iter()
        .map(|p| {
            context! {
                slug => p.slug, title => p.title, delivery => p.delivery,
                available => p.available,
            }
        })
        .collect();
    let periods: Vec<Value> = [Period::Today, Period::Days7, Period::Days30]
        .iter()
        .map(|p| {
            context! {
                key => p.as_str(),
                label => t(&format!("console.dashboard.period_{}", p.as_str())),
                current => *p == period,
            }
        })
        .collect();
    render(
        &state,
        &ctx,
        Some(&admin),
        StatusCode::OK,
        "console/dashboard.html",
        "dashboard",
        context! {
            period => period.as_str(),
            periods => periods,
            timezone => s.timezone,
            from => s.range.from.to_string(),
            to => s.range.to.to_string(),
            total => context! {
                orders => s.total.created,
                paid => s.total.paid,
                conversion => percent(s.total.conversion()),
                revenue => amounts(&s.total.revenue),
                refunded => amounts(&s.total.refunded),
            },
            currencies => currencies.iter().collect::<Vec<_>>(),
            days => s.days.iter().map(|x| day_row(x, &currencies)).collect::<Vec<_>>(),
            chart => Value::from_safe_string(svg),
            channels => channels,
            exceptions => waiting(&d.exceptions, &tz),
            awaiting => waiting(&d.awaiting_fulfilment, &tz),
            low_stock => low_stock,
            low_stock_threshold => d.low_stock_threshold,
        },
    )
}
