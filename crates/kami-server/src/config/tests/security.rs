//! `[security]`: where the master key lives.

use super::*;

#[test]
fn master_key_defaults_to_the_data_dir_and_resolves_against_the_config_dir() {
    let c = parse("[server]\ndata_dir = \"/srv/kami\"\n").config;
    assert_eq!(c.security.master_key_file, None);
    assert_eq!(
        c.security.master_key_path(&c.server),
        PathBuf::from("/srv/kami/master.key")
    );
    let default = parse("").config;
    assert_eq!(
        default.security.master_key_path(&default.server),
        PathBuf::from("./data/master.key")
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kami.toml");
    std::fs::write(&file, "[security]\nmaster_key_file = \"keys/master.key\"\n").unwrap();
    let c = load(Some(&file), env(&[])).unwrap().config;
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        c.security.master_key_path(&c.server),
        base.join("keys/master.key")
    );

    let c = load_env(
        "",
        &[(
            "KAMI__SECURITY__MASTER_KEY_FILE",
            "/run/secrets/kami-master.key",
        )],
    )
    .unwrap()
    .config;
    assert_eq!(
        c.security.master_key_path(&c.server),
        PathBuf::from("/run/secrets/kami-master.key")
    );
    let msg = parse_err("[security]\nmaster_key_file = \"\"\n");
    assert!(msg.contains("security.master_key_file"), "{msg}");
}
