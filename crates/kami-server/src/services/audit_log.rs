//! The audit log as the seller reads it: filtered, paged newest first, and exported as CSV
//! (an export is itself audited).

use kami_store::{Actor, AuditFilter, AuditRecord};

use super::card_stock::csv_field;
use super::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::{rfc3339, utc_day_start};

/// Rows per page (and per batch of an export).
pub const PAGE: u32 = 100;
/// The most rows one export holds.
pub const MAX_EXPORT: usize = 100_000;

/// What the seller filters by; every part optional. Days are UTC (`YYYY-MM-DD`, `to`
/// included).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub before: Option<i64>,
}

/// The store's filter for `q`; `422 invalid_date` for a day that is not `YYYY-MM-DD`.
pub fn filter(q: &Query, limit: u32) -> ServiceResult<AuditFilter> {
    let day = |d: &Option<String>| -> ServiceResult<Option<i64>> {
        match d.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => Ok(None),
            Some(d) => utc_day_start(d).map(Some).ok_or_else(|| {
                ServiceError::invalid("invalid_date", format!("{d:?} is not a date (YYYY-MM-DD)"))
            }),
        }
    };
    let text = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.chars().take(200).collect::<String>())
    };
    Ok(AuditFilter {
        before_id: q.before,
        target: text(&q.target),
        actor: text(&q.actor),
        from: day(&q.from)?,
        // The whole `to` day is included.
        to: day(&q.to)?.map(|t| t + 86_400_000),
        limit,
    })
}

/// One page, newest first.
pub async fn page(state: &AppState, q: &Query) -> ServiceResult<Vec<AuditRecord>> {
    Ok(state.store.audit_log(filter(q, PAGE)?).await?)
}

/// The rows `q` selects (at most [`MAX_EXPORT`]) as CSV: id, time, actor, action, target,
/// ip, before, after. The export gets its own audit row (with its filter, not its content).
pub async fn export_csv(state: &AppState, q: &Query, actor: &Actor) -> ServiceResult<String> {
    let mut f = filter(q, 500)?;
    let mut out = String::from("id,at,actor,action,target,ip,before,after\n");
    let mut rows = 0usize;
    loop {
        let batch = state.store.audit_log(f.clone()).await?;
        for r in &batch {
            out.push_str(&csv_line(r));
            rows += 1;
        }
        match batch.last() {
            Some(last) if batch.len() == 500 && rows < MAX_EXPORT => f.before_id = Some(last.id),
            _ => break,
        }
    }
    state
        .store
        .record_audit(
            actor.entry(
                "audit.export",
                "audit".into(),
                None,
                Some(serde_json::json!({
                    "rows": rows,
                    "actor": f.actor, "target": f.target, "from": q.from, "to": q.to,
                })),
            ),
            state.now_ms(),
        )
        .await?;
    Ok(out)
}

fn csv_line(r: &AuditRecord) -> String {
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string).unwrap_or_default();
    let e = &r.entry;
    [
        r.id.to_string(),
        rfc3339(r.at),
        csv_field(&e.actor),
        csv_field(&e.action),
        csv_field(&e.target),
        csv_field(e.ip.as_deref().unwrap_or("")),
        csv_field(&json(&e.before)),
        csv_field(&json(&e.after)),
    ]
    .join(",")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_texts_become_the_stores_filter() {
        let f = filter(
            &Query {
                actor: Some("  token:ci ".into()),
                target: Some(String::new()),
                from: Some("2026-12-01".into()),
                to: Some("2026-12-01".into()),
                before: Some(9),
            },
            50,
        )
        .unwrap();
        assert_eq!(f.actor.as_deref(), Some("token:ci"));
        assert_eq!(f.target, None, "an empty field filters nothing");
        assert_eq!(f.from, Some(1_796_083_200_000));
        assert_eq!(f.to, Some(1_796_083_200_000 + 86_400_000), "the whole day");
        assert_eq!((f.before_id, f.limit), (Some(9), 50));
        let bad = filter(
            &Query {
                from: Some("12/01/2026".into()),
                ..Query::default()
            },
            50,
        );
        assert!(matches!(
            bad,
            Err(ServiceError::Invalid {
                code: "invalid_date",
                ..
            })
        ));
    }
}
