//! `shop.theme_dir` overrides the embedded theme file by file (templates, assets) and message
//! by message (locales); a broken override stops start-up, naming the template.

use kami_server::{Application, Config};

use crate::support::*;
use kami_testkit::{Backend, TestApp};

fn write(dir: &std::path::Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn theme_config(dir: &std::path::Path) -> String {
    format!("[shop]\ntheme_dir = '{}'\n", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn theme_dir_overrides_templates_assets_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "templates/catalogue.html",
        "{% extends \"base.html\" %}\n{% block main %}<p data-testid=\"custom\">CUSTOM CATALOGUE: \
         {{ categories|length }} categories, {{ t(\"nav.lookup\") }}</p>{% endblock %}\n",
    );
    write(
        dir.path(),
        "locales/en.toml",
        "[nav]\nlookup = \"Where is my order?\"\n",
    );
    write(
        dir.path(),
        "assets/style.css",
        "body { color: rebeccapurple }\n",
    );
    let app = TestApp::spawn_with(Backend::Sqlite, &theme_config(dir.path())).await;
    app.create_product("item", 100, "auto").await;
    app.import_keys("item", 1).await;

    // The overridden template, with the overridden message in English only.
    let p = get_in(&app, "/", "en").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        p.text_of("custom"),
        "CUSTOM CATALOGUE: 1 categories, Where is my order?"
    );
    assert_eq!(p.text_of("nav-lookup"), "Where is my order?");
    // Every other English message is still the default one (merged key by key).
    assert!(p.body.contains("Automatic delivery by kami"), "{}", p.body);
    let p = get_in(&app, "/", "zh-CN").await;
    assert_eq!(
        p.text_of("custom"),
        "CUSTOM CATALOGUE: 1 categories, 查询订单"
    );
    assert_eq!(p.text_of("nav-lookup"), "查询订单");

    // Templates not overridden are the embedded ones, with the merged messages.
    let p = get_in(&app, "/p/item", "en").await;
    assert!(p.has("order-form"), "{}", p.body);
    assert_eq!(p.text_of("nav-lookup"), "Where is my order?");
    assert!(p.body.contains("Buy now"));

    // Assets: the override, and the embedded files it does not replace.
    let css = get(&app, "/assets/style.css", &[]).await;
    assert_eq!(css.body, "body { color: rebeccapurple }\n");
    let js = get(&app, "/assets/app.js", &[]).await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("kami page script"));
    // Nothing outside the theme's assets is served.
    write(dir.path(), "secret.txt", "not an asset");
    assert_eq!(get(&app, "/assets/../secret.txt", &[]).await.status, 404);
    assert_eq!(
        get(&app, "/assets/%2E%2E/secret.txt", &[]).await.status,
        404
    );
}

async fn build_with_theme(files: &[(&str, &str)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    for (f, text) in files {
        write(dir.path(), f, text);
    }
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{0}\"\n[database]\nurl = \"sqlite://{0}/kami.db\"\n{1}",
        dir.path().display(),
        theme_config(dir.path())
    );
    let config: Config = Config::from_toml_str(&toml).expect("config").config;
    match Application::build(config).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_theme_stops_start_up_with_its_name() {
    // A good override builds.
    build_with_theme(&[("templates/catalogue.html", "{% extends \"base.html\" %}\n")])
        .await
        .unwrap();

    for (file, text, named) in [
        (
            "templates/catalogue.html",
            "{% extends \"base.html\" %}{% block main %}{{ unclosed {% endblock %}",
            "catalogue.html",
        ),
        (
            "templates/order_body.html",
            "{% if order.keys %}<ol>{% for k in order.keys %}",
            "order_body.html",
        ),
        (
            "templates/base.html",
            "<html>{% block main %}{% endblok %}</html>",
            "base.html",
        ),
        ("locales/en.toml", "[nav\nlookup = \"x\"", "en.toml"),
        ("locales/zh-CN.toml", "nav = 1\n", "zh-CN.toml"),
    ] {
        let err = build_with_theme(&[(file, text)])
            .await
            .expect_err(&format!("{file} is broken"));
        assert!(
            err.contains(named),
            "{file}: error {err:?} does not name it"
        );
    }
}
