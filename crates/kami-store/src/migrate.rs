//! Embedded, ordered migrations. Each runs once, in a transaction, recorded in
//! `kami_migrations`. PostgreSQL serialises concurrent migrators with an advisory lock.

use crate::error::{Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("migrations/sqlite/0001_init.sql"),
        postgres: include_str!("migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "checks_refunds",
        sqlite: include_str!("migrations/sqlite/0002_checks_refunds.sql"),
        postgres: include_str!("migrations/postgres/0002_checks_refunds.sql"),
    },
    Migration {
        version: 3,
        name: "storefront",
        sqlite: include_str!("migrations/sqlite/0003_storefront.sql"),
        postgres: include_str!("migrations/postgres/0003_storefront.sql"),
    },
    Migration {
        version: 4,
        name: "outbox_mail",
        sqlite: include_str!("migrations/sqlite/0004_outbox_mail.sql"),
        postgres: include_str!("migrations/postgres/0004_outbox_mail.sql"),
    },
    Migration {
        version: 5,
        name: "fulfilment",
        sqlite: include_str!("migrations/sqlite/0005_fulfilment.sql"),
        postgres: include_str!("migrations/postgres/0005_fulfilment.sql"),
    },
    Migration {
        version: 6,
        name: "sealed_secrets",
        sqlite: include_str!("migrations/sqlite/0006_sealed_secrets.sql"),
        postgres: include_str!("migrations/postgres/0006_sealed_secrets.sql"),
    },
    Migration {
        version: 7,
        name: "risk",
        sqlite: include_str!("migrations/sqlite/0007_risk.sql"),
        postgres: include_str!("migrations/postgres/0007_risk.sql"),
    },
    Migration {
        version: 8,
        name: "event_retention",
        sqlite: include_str!("migrations/sqlite/0008_event_retention.sql"),
        postgres: include_str!("migrations/postgres/0008_event_retention.sql"),
    },
    Migration {
        version: 9,
        name: "audit",
        sqlite: include_str!("migrations/sqlite/0009_audit.sql"),
        postgres: include_str!("migrations/postgres/0009_audit.sql"),
    },
    Migration {
        version: 10,
        name: "console_auth",
        sqlite: include_str!("migrations/sqlite/0010_console_auth.sql"),
        postgres: include_str!("migrations/postgres/0010_console_auth.sql"),
    },
    Migration {
        version: 11,
        name: "catalog_admin",
        sqlite: include_str!("migrations/sqlite/0011_catalog_admin.sql"),
        postgres: include_str!("migrations/postgres/0011_catalog_admin.sql"),
    },
    Migration {
        version: 12,
        name: "pending_counts",
        sqlite: include_str!("migrations/sqlite/0012_pending_counts.sql"),
        postgres: include_str!("migrations/postgres/0012_pending_counts.sql"),
    },
    Migration {
        version: 13,
        name: "order_search",
        sqlite: include_str!("migrations/sqlite/0013_order_search.sql"),
        postgres: include_str!("migrations/postgres/0013_order_search.sql"),
    },
    Migration {
        version: 14,
        name: "stats",
        sqlite: include_str!("migrations/sqlite/0014_stats.sql"),
        postgres: include_str!("migrations/postgres/0014_stats.sql"),
    },
    Migration {
        version: 15,
        name: "coupons",
        sqlite: include_str!("migrations/sqlite/0015_coupons.sql"),
        postgres: include_str!("migrations/postgres/0015_coupons.sql"),
    },
    Migration {
        version: 16,
        name: "channels",
        sqlite: include_str!("migrations/sqlite/0016_channels.sql"),
        postgres: include_str!("migrations/postgres/0016_channels.sql"),
    },
    Migration {
        version: 17,
        name: "settings",
        sqlite: include_str!("migrations/sqlite/0017_settings.sql"),
        postgres: include_str!("migrations/postgres/0017_settings.sql"),
    },
    Migration {
        version: 18,
        name: "catalog_media_users",
        sqlite: include_str!("migrations/sqlite/0018_catalog_media_users.sql"),
        postgres: include_str!("migrations/postgres/0018_catalog_media_users.sql"),
    },
    Migration {
        version: 19,
        name: "routing",
        sqlite: include_str!("migrations/sqlite/0019_routing.sql"),
        postgres: include_str!("migrations/postgres/0019_routing.sql"),
    },
    Migration {
        version: 20,
        name: "reconciliation",
        sqlite: include_str!("migrations/sqlite/0020_reconciliation.sql"),
        postgres: include_str!("migrations/postgres/0020_reconciliation.sql"),
    },
    Migration {
        version: 21,
        name: "alerts",
        sqlite: include_str!("migrations/sqlite/0021_alerts.sql"),
        postgres: include_str!("migrations/postgres/0021_alerts.sql"),
    },
    Migration {
        version: 22,
        name: "channel_measures",
        sqlite: include_str!("migrations/sqlite/0022_channel_measures.sql"),
        postgres: include_str!("migrations/postgres/0022_channel_measures.sql"),
    },
    Migration {
        version: 23,
        name: "fewer_order_indexes",
        sqlite: include_str!("migrations/sqlite/0023_fewer_order_indexes.sql"),
        postgres: include_str!("migrations/postgres/0023_fewer_order_indexes.sql"),
    },
    Migration {
        version: 24,
        name: "leaner_writes",
        sqlite: include_str!("migrations/sqlite/0024_leaner_writes.sql"),
        postgres: include_str!("migrations/postgres/0024_leaner_writes.sql"),
    },
    Migration {
        version: 25,
        name: "gateway_ref",
        sqlite: include_str!("migrations/sqlite/0025_gateway_ref.sql"),
        postgres: include_str!("migrations/postgres/0025_gateway_ref.sql"),
    },
    Migration {
        version: 26,
        name: "coin_amount",
        sqlite: include_str!("migrations/sqlite/0026_coin_amount.sql"),
        postgres: include_str!("migrations/postgres/0026_coin_amount.sql"),
    },
    Migration {
        version: 27,
        name: "charges",
        sqlite: include_str!("migrations/sqlite/0027_charges.sql"),
        postgres: include_str!("migrations/postgres/0027_charges.sql"),
    },
    Migration {
        version: 28,
        name: "payment_lookup",
        sqlite: include_str!("migrations/sqlite/0028_payment_lookup.sql"),
        postgres: include_str!("migrations/postgres/0028_payment_lookup.sql"),
    },
    Migration {
        version: 29,
        name: "pending_plans",
        sqlite: include_str!("migrations/sqlite/0029_pending_plans.sql"),
        postgres: include_str!("migrations/postgres/0029_pending_plans.sql"),
    },
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS kami_migrations \
    (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn sqlite(conn: &rusqlite::Connection) -> Result<()> {
    conn.execute_batch(CREATE_TABLE)?;
    for m in MIGRATIONS {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = (|| -> Result<()> {
            let done: i64 = conn.query_row(
                "SELECT COUNT(*) FROM kami_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )?;
            if done == 0 {
                conn.execute_batch(m.sqlite).map_err(|e| {
                    StoreError::Database(format!("migration {} ({}): {e}", m.version, m.name))
                })?;
                conn.execute(
                    "INSERT INTO kami_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![m.version, m.name, now_ms()],
                )?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

pub(crate) fn postgres(client: &mut postgres::Client) -> Result<()> {
    let mut tx = client.transaction()?;
    // Arbitrary constant: "kami" migrations lock.
    tx.execute("SELECT pg_advisory_xact_lock(7263001)", &[])?;
    tx.batch_execute(CREATE_TABLE)?;
    for m in MIGRATIONS {
        let done: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM kami_migrations WHERE version = $1",
                &[&m.version],
            )?
            .get(0);
        if done == 0 {
            tx.batch_execute(m.postgres).map_err(|e| {
                StoreError::Database(format!("migration {} ({}): {e}", m.version, m.name))
            })?;
            tx.execute(
                "INSERT INTO kami_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &now_ms()],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}
