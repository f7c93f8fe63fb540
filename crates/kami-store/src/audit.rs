//! The audit log: who changed what in the shop, and when. Rows are written by the store
//! function that makes the change, in its transaction (a change and its audit row commit
//! together or not at all), and are never updated or deleted.

use kami_core::Millis;

use crate::db::{Row, Tx};
use crate::error::Result;
use crate::model::{AuditEntry, AuditFilter, AuditRecord};
use crate::params;

/// The most rows one page of the log may hold.
pub const MAX_PAGE: u32 = 500;

pub(crate) fn record(tx: &mut dyn Tx, e: &AuditEntry, at: Millis) -> Result<()> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(serde_json::Value::to_string);
    tx.exec(
        "INSERT INTO audit_log (at, actor, action, target, ip, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![
            at,
            e.actor.as_str(),
            e.action.as_str(),
            e.target.as_str(),
            e.ip.as_deref(),
            json(&e.before),
            json(&e.after)
        ],
    )?;
    Ok(())
}

/// Newest first; `before_id` pages backwards.
pub(crate) fn list(tx: &mut dyn Tx, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let rows = tx.query(
        "SELECT id, at, actor, action, target, ip, before, after FROM audit_log \
         WHERE id < $1 AND ($2 = '' OR target = $2) AND ($3 = '' OR actor = $3) \
           AND at >= $4 AND at < $5 \
         ORDER BY id DESC LIMIT $6",
        params![
            f.before_id.unwrap_or(i64::MAX),
            f.target.as_deref().unwrap_or(""),
            f.actor.as_deref().unwrap_or(""),
            f.from.unwrap_or(i64::MIN),
            f.to.unwrap_or(i64::MAX),
            i64::from(f.limit.clamp(1, MAX_PAGE))
        ],
    )?;
    rows.iter().map(from_row).collect()
}

fn from_row(r: &Row) -> Result<AuditRecord> {
    let json = |col: &str| -> Result<Option<serde_json::Value>> {
        Ok(r.get::<Option<String>>(col)?
            .and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(AuditRecord {
        id: r.get("id")?,
        at: r.get("at")?,
        entry: AuditEntry {
            actor: r.get("actor")?,
            action: r.get("action")?,
            target: r.get("target")?,
            ip: r.get("ip")?,
            before: json("before")?,
            after: json("after")?,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::model::{AuditEntry, AuditFilter};
    use crate::sealed::Keyring;
    use crate::Store;

    fn entry(actor: &str, action: &str, target: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            ip: Some("192.0.2.1".into()),
            before: Some(json!({"price": 1230})),
            after: Some(json!({"price": 990})),
        }
    }

    #[tokio::test]
    async fn rows_come_back_newest_first_filtered_and_paged() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kami.db").display());
        let store = Store::connect_with_keyring(&url, 2, Keyring::generate().unwrap())
            .await
            .unwrap();
        store
            .record_audit(entry("user:owner", "product.update", "product:vip"), 1_000)
            .await
            .unwrap();
        store
            .record_audit(entry("token:ci", "order.refund", "order:K1"), 2_000)
            .await
            .unwrap();
        store
            .record_audit(entry("user:owner", "product.update", "product:vip"), 3_000)
            .await
            .unwrap();

        let all = store
            .audit_log(AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.at).collect::<Vec<_>>(),
            [3_000, 2_000, 1_000]
        );
        assert_eq!(all[1].entry, entry("token:ci", "order.refund", "order:K1"));

        let vip = |f: AuditFilter| {
            let store = store.clone();
            async move {
                store
                    .audit_log(AuditFilter {
                        target: Some("product:vip".into()),
                        limit: 10,
                        ..f
                    })
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.at)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(vip(AuditFilter::default()).await, [3_000, 1_000]);
        assert_eq!(
            vip(AuditFilter {
                before_id: Some(all[0].id),
                ..AuditFilter::default()
            })
            .await,
            [1_000],
            "paged backwards"
        );
        assert_eq!(
            vip(AuditFilter {
                from: Some(1_000),
                to: Some(3_000),
                ..AuditFilter::default()
            })
            .await,
            [1_000],
            "[from, to)"
        );
        let by_token = store
            .audit_log(AuditFilter {
                actor: Some("token:ci".into()),
                limit: 1,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(by_token.len(), 1);
        assert_eq!(by_token[0].entry.action, "order.refund");
    }
}
