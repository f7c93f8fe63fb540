//! `kami admin user create`, `reset-2fa`, `disable`, `enable` and `remove` against a real database, on
//! SQLite and on PostgreSQL: the reset turns the second factor off and is audited as `cli`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kami_store::{AuditEntry, AuditFilter, KeyFiles, Store};
use kami_testkit::{both_backends, Backend, TestDb};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kami"))
}

async fn kami(args: &[&str], config: &Path) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    tokio::process::Command::new(bin())
        .args(&all)
        .output()
        .await
        .unwrap()
}

async fn reset_2fa(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let config = dir.path().join("kami.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[security]\nmaster_key_file = \"{}\"\n",
            db.url(),
            key_file.display()
        ),
    )
    .unwrap();
    let created = kami(&["admin", "user", "create", "owner"], &config).await;
    assert!(created.status.success(), "{created:?}");

    let store = Store::connect(db.url(), 2, &KeyFiles::new(&key_file))
        .await
        .unwrap();
    let id = store.admin_user("owner").await.unwrap().unwrap().id;
    store.begin_admin_totp(id, vec![7; 20]).await.unwrap();
    let enable = AuditEntry {
        actor: "user:owner".into(),
        action: "2fa.enable".into(),
        target: "user:owner".into(),
        ip: None,
        before: None,
        after: None,
    };
    assert!(store
        .enable_admin_totp(id, 1, vec!["x".into()], enable, 1)
        .await
        .unwrap());
    assert!(
        store
            .admin_user("owner")
            .await
            .unwrap()
            .unwrap()
            .totp_enabled
    );

    let reset = kami(&["admin", "user", "reset-2fa", "owner"], &config).await;
    assert!(reset.status.success(), "{reset:?}");
    let user = store.admin_user("owner").await.unwrap().unwrap();
    assert!(!user.totp_enabled);
    assert_eq!(store.admin_totp_secret(id).await.unwrap(), None);
    assert_eq!(store.admin_recovery_codes_left(id).await.unwrap(), 0);
    let rows = store
        .audit_log(AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows[0].entry.action, "2fa.reset");
    assert_eq!(rows[0].entry.actor, "cli");
    assert_eq!(rows[0].entry.target, "user:owner");

    let unknown = kami(&["admin", "user", "reset-2fa", "nobody"], &config).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no admin user named \"nobody\""),
        "{unknown:?}"
    );
}
both_backends!(reset_2fa);

/// `kami admin user disable|enable|remove`: the console's rules (never the last enabled user),
/// audited as `cli`.
async fn disable_enable_remove(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let config = dir.path().join("kami.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[security]\nmaster_key_file = \"{}\"\n",
            db.url(),
            key_file.display()
        ),
    )
    .unwrap();
    for name in ["owner", "clerk"] {
        let created = kami(&["admin", "user", "create", name], &config).await;
        assert!(created.status.success(), "{created:?}");
    }
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = kami(&["admin", "user", "disable", "clerk"], &config).await;
    assert!(out.status.success(), "{out:?}");
    let out = kami(&["admin", "user", "disable", "owner"], &config).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("last enabled admin user"), "{out:?}");
    let out = kami(&["admin", "user", "remove", "owner"], &config).await;
    assert!(!out.status.success(), "{out:?}");
    let out = kami(&["admin", "user", "enable", "clerk"], &config).await;
    assert!(out.status.success(), "{out:?}");
    let out = kami(&["admin", "user", "remove", "owner"], &config).await;
    assert!(out.status.success(), "{out:?}");
    let out = kami(&["admin", "user", "remove", "owner"], &config).await;
    assert!(
        stderr(&out).contains("no admin user named \"owner\""),
        "{out:?}"
    );

    let store = Store::connect(db.url(), 2, &KeyFiles::new(&key_file))
        .await
        .unwrap();
    assert!(store.admin_user("owner").await.unwrap().is_none());
    assert!(!store.admin_user("clerk").await.unwrap().unwrap().disabled);
    let rows = store
        .audit_log(AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.entry.actor.as_str(),
                r.entry.action.as_str(),
                r.entry.target.as_str(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("cli", "user.remove", "user:owner"),
            ("cli", "user.enable", "user:clerk"),
            ("cli", "user.disable", "user:clerk"),
        ]
    );
}
both_backends!(disable_enable_remove);
