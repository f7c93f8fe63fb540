//! Issue 10 part 3 in the console and its API twins: the new-product form (then the product
//! is on the storefront and sells at its price), product pictures (resized, served with
//! cache headers, refused precisely with nothing stored, strict `/media/` names), moving
//! products and categories (the storefront follows), and categories themselves.

use std::io::Cursor;

use kami_testkit::{both_backends, Backend, TestApp};
use serde_json::{json, Value};

use crate::support::{audit, spawn, Browser, Page, USER};

/// A PNG of `w`×`h`, opaque, with some detail.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A decompression bomb's shape: a PNG whose header claims `w`×`h` and whose data is tiny.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", b"\x78\x9c\x03\x00\x00\x00\x00\x01");
    chunk(b"IEND", b"");
    out
}

/// A `multipart/form-data` POST as a browser sends a file form.
pub async fn post_form(
    app: &TestApp,
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> Page {
    const BOUNDARY: &str = "----kamitestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"picture.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url(path))
        .header("cookie", cookies.join("; "))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Page {
        status,
        headers,
        body: r.text().await.unwrap(),
    }
}

/// A GET with the response's status, headers and bytes.
async fn fetch(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.http.get(app.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The files in the media directory.
fn media_files(app: &TestApp) -> Vec<String> {
    let dir = app.state.config.server.data_dir.join("media");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `PUT /api/v1/admin/products/{slug}/image` with a raw body.
async fn put_image(app: &TestApp, slug: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .http
        .put(app.url(&format!("/api/v1/admin/products/{slug}/image")))
        .bearer_auth(&app.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    )
}

async fn admin_send(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(&app.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    )
}

/// A `PUT .../image` declaring 5 MB + 1 byte and sending none of it: the answer's text.
async fn too_large_head(app: &TestApp, slug: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/admin/products/{slug}/image HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\n\r\n",
        app.admin_token,
        5 * 1024 * 1024 + 1
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.windows(2).filter(|w| w == b"}}").count() > 0 {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an answer without the body");
    String::from_utf8_lossy(&out).into_owned()
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

async fn create_in_the_console_then_buy_at_its_price(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut owner = Browser::signed_in(&app).await;
    for (lang, says) in [("zh-CN", "新建商品"), ("en", "New product")] {
        let p = owner.get(&format!("/admin/products/new?lang={lang}")).await;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.body.contains(says), "{lang}: {}", p.body);
        assert!(p.body.contains("enctype=\"multipart/form-data\""));
    }
    let form = owner.get("/admin/products/new").await;
    let csrf = form.csrf();
    let fields = |slug: &'static str, price: &'static str| {
        vec![
            ("slug", slug),
            ("currency", "CNY"),
            ("delivery", "manual"),
            ("stock", ""),
            ("title", "Game top-up"),
            ("price", price),
            ("category", "Games"),
            ("sort_order", "0"),
            ("min_quantity", "1"),
            ("max_quantity", "10"),
            ("visible", "on"),
            ("tiers", "3 11.00"),
            (
                "fields",
                "account | Game account | required | ^[0-9]{5,12}$",
            ),
            (
                "description",
                "**Fast** top-up <script>alert(1)</script> [x](javascript:alert(1))",
            ),
        ]
    };
    let picture = png(1000, 500);

    // No form token: refused, nothing created.
    let p = post_form(
        &app,
        &owner,
        "/admin/products/new",
        &fields("topup", "12.50"),
        None,
    )
    .await;
    assert_eq!(p.status, 403, "{}", p.body);
    // Bad input: the reason, the values kept, nothing created.
    let mut bad: Vec<(&str, &str)> = fields("topup", "12.505");
    bad.push(("csrf", &csrf));
    let p = post_form(&app, &owner, "/admin/products/new", &bad, None).await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("product-error").unwrap().contains("price"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("value=\"12.505\""),
        "the sent price is kept"
    );
    // A picture that is not one: refused before anything is created.
    let mut ok: Vec<(&str, &str)> = fields("topup", "12.50");
    ok.push(("csrf", &csrf));
    let mut cut = png(50, 50);
    cut.truncate(cut.len() / 2);
    let p = post_form(
        &app,
        &owner,
        "/admin/products/new",
        &ok,
        Some(("image", cut.as_slice())),
    )
    .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert!(
        p.testid("product-error")
            .unwrap()
            .contains("could not be read"),
        "{}",
        p.body
    );
    let listed = app.admin_get("/api/v1/admin/products").await;
    assert_eq!(listed["products"], json!([]), "nothing created: {listed}");
    assert!(media_files(&app).is_empty());

    let p = post_form(
        &app,
        &owner,
        "/admin/products/new",
        &ok,
        Some(("image", picture.as_slice())),
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/products/topup?saved=1"),
        "{}",
        p.body
    );
    // The same slug again: a precise refusal.
    let p = post_form(&app, &owner, "/admin/products/new", &ok, None).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p
        .testid("product-error")
        .unwrap()
        .contains("already exists"));

    // On the storefront, in its category, with its picture and a safe description.
    let (s, _, home) = fetch(&app, "/").await;
    let home = String::from_utf8(home).unwrap();
    assert_eq!(s, 200);
    assert!(
        home.contains("Game top-up") && home.contains("Games"),
        "{home}"
    );
    assert!(home.contains("data-testid=\"thumb-topup\""), "{home}");
    let (s, _, page) = fetch(&app, "/p/topup").await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(s, 200);
    assert!(page.contains("<strong>Fast</strong>"), "{page}");
    assert!(
        !page.contains("<script>alert") && !page.contains("javascript:"),
        "{page}"
    );
    assert!(page.contains("data-testid=\"product-image\""), "{page}");
    assert!(page.contains("name=\"field.account\""), "{page}");
    let api = app.admin_get("/api/v1/admin/products").await;
    let product = &api["products"][0];
    assert_eq!(product["price"], 1250, "{product}");
    assert_eq!(product["delivery"], "manual");
    assert_eq!(product["category"], "Games");
    assert_eq!(
        product["tiers"],
        json!([{"min_quantity": 3, "price": 1100}])
    );
    let image = product["image"].as_str().unwrap().to_owned();
    let (_, _, served) = fetch(&app, &image).await;
    assert_eq!(dimensions(&served), (800, 400));

    // It sells at its price (and its tier).
    for (qty, amount) in [(1, 1250), (3, 3300)] {
        let (s, v) = app
            .try_order(
                json!({"product": "topup", "quantity": qty, "email": "b@example.com",
                              "method": "sandbox", "fields": {"account": "123456"}}),
            )
            .await;
        assert_eq!((s, v["amount"].as_i64()), (201, Some(amount)), "{v}");
    }

    let created = audit(&app, "product.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].entry.actor, format!("user:{USER}"));
    assert!(created[0].entry.before.is_none());
    let after = created[0].entry.after.as_ref().unwrap();
    assert_eq!(
        (&after["price"], &after["currency"], &after["category"]),
        (&json!(1250), &json!("CNY"), &json!("Games"))
    );
    assert_eq!(audit(&app, "product.image").await.len(), 1);
    // Its category exists now.
    let cats = app.admin_get("/api/v1/admin/categories").await;
    assert_eq!(
        cats["categories"],
        json!([{"name": "Games", "sort_order": 10, "products": 1}])
    );

    // The API twin creates the same way (audited too), and "new" is not a slug.
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "new", "title": "x", "price": 100, "currency": "CNY", "delivery": "auto"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_slug")),
        "{v}"
    );
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products",
            json!({"slug": "api", "title": "By API", "price": 100, "currency": "CNY",
                   "delivery": "auto", "visible": false,
                   "input_fields": [{"name": "qq", "label": "QQ", "required": false}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["visible"].as_bool(), v["slug"].as_str()),
        (Some(false), Some("api"))
    );
    assert_eq!(v["input_fields"][0]["name"], "qq", "{v}");
    assert_eq!(audit(&app, "product.create").await.len(), 2);
}
both_backends!(create_in_the_console_then_buy_at_its_price);

async fn pictures_are_resized_cached_and_refused_precisely(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    app.create_product("pic", 500, "auto").await;
    app.import_keys("pic", 1).await;

    let (s, v) = put_image(&app, "pic", "image/png", png(1600, 1200)).await;
    assert_eq!(s, 200, "{v}");
    let (image, thumb) = (
        v["image"].as_str().unwrap().to_owned(),
        v["image_thumb"].as_str().unwrap().to_owned(),
    );
    assert!(
        image.starts_with("/media/") && image.ends_with(".jpg"),
        "{image}"
    );
    for (url, dims) in [(&image, (800, 600)), (&thumb, (400, 300))] {
        let (s, h, bytes) = fetch(&app, url).await;
        assert_eq!(s, 200, "{url}");
        assert_eq!(header(&h, "content-type"), "image/jpeg");
        assert_eq!(
            header(&h, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(dimensions(&bytes), dims, "{url}");
    }
    let (_, _, page) = fetch(&app, "/p/pic").await;
    assert!(
        String::from_utf8(page)
            .unwrap()
            .contains(&format!("src=\"{image}\"")),
        "the product page shows it"
    );
    let (_, _, home) = fetch(&app, "/").await;
    assert!(String::from_utf8(home)
        .unwrap()
        .contains(&format!("src=\"{thumb}\"")));
    let public = app.product("pic").await;
    assert_eq!(
        (public["image"].as_str(), public["image_thumb"].as_str()),
        (Some(image.as_str()), Some(thumb.as_str()))
    );
    let mut owner = Browser::signed_in(&app).await;
    let list = owner.get("/admin/products").await;
    assert!(
        list.body.contains(&format!("src=\"{thumb}\"")),
        "{}",
        list.body
    );
    let stored = media_files(&app);
    assert_eq!(stored.len(), 2, "{stored:?}");

    // Refused precisely; nothing stored, nothing changed.
    for (ct, body, status, code) in [
        (
            "image/png",
            b"not a picture at all".to_vec(),
            422,
            "not_an_image",
        ),
        (
            "image/bmp",
            b"BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00".to_vec(),
            422,
            "unsupported_image",
        ),
        (
            "image/png",
            png_claiming(100_000, 100_000),
            422,
            "image_too_many_pixels",
        ),
        ("text/plain", png(10, 10), 415, "unsupported_media_type"),
    ] {
        let (s, v) = put_image(&app, "pic", ct, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{v}"
        );
    }
    let (s, v) = put_image(&app, "pic", "image/png", png_claiming(100_000, 100_000)).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100000×100000"),
        "{s} {v}"
    );
    // Too large: refused on its declared length, before a byte of it is read (a raw request
    // that never sends its body still gets its answer).
    let head = too_large_head(&app, "pic").await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("image_too_large"), "{head}");
    let (s, _) = put_image(&app, "nope", "image/png", png(10, 10)).await;
    assert_eq!(s, 404);
    assert_eq!(media_files(&app), stored, "nothing stored");
    let p = app.admin_get("/api/v1/admin/products").await;
    assert_eq!(p["products"][0]["image"], image.as_str(), "unchanged");
    assert_eq!(audit(&app, "product.image").await.len(), 1);

    // Strict names only.
    let hex = "a".repeat(64);
    for bad in [
        "/media/../x".to_owned(),
        "/media/..%2F..%2Fmaster.key".to_owned(),
        "/media/%2E%2E%2Fdata%2Fmaster.key".to_owned(),
        format!("/media/{hex}.jpg"),
        format!("/media/{}.jpg", "A".repeat(64)),
        format!("{}.gif", image.trim_end_matches(".jpg")),
        format!("{image}.png"),
        "/media/master.key".to_owned(),
    ] {
        let (s, _, _) = fetch(&app, &bad).await;
        assert_eq!(s, 404, "{bad}");
    }

    // The console's form: CSRF enforced, oversize refused, then a replacement; the old
    // files go.
    let edit = owner.get("/admin/products/pic").await;
    assert!(edit.testid("image-preview").is_some(), "{}", edit.body);
    let csrf = edit.csrf();
    let p = post_form(
        &app,
        &owner,
        "/admin/products/pic/image",
        &[],
        Some(("image", &png(30, 30))),
    )
    .await;
    assert_eq!(p.status, 403);
    let huge = vec![7u8; 5 * 1024 * 1024 + 10];
    let p = post_form(
        &app,
        &owner,
        "/admin/products/pic/image",
        &[("csrf", &csrf)],
        Some(("image", &huge)),
    )
    .await;
    assert_eq!(p.status, 413, "{}", p.body);
    assert!(
        p.testid("product-error").unwrap().contains("5 MB"),
        "{}",
        p.body
    );
    let p = post_form(
        &app,
        &owner,
        "/admin/products/pic/image",
        &[("csrf", &csrf)],
        Some(("image", b"%PDF-1.7".as_slice())),
    )
    .await;
    assert_eq!(p.status, 422, "{}", p.body);
    assert_eq!(media_files(&app), stored, "nothing stored");
    let p = post_form(
        &app,
        &owner,
        "/admin/products/pic/image",
        &[("csrf", &csrf)],
        Some(("image", &png(300, 200))),
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/products/pic?saved=1"),
        "{}",
        p.body
    );
    // Small enough to be its own thumbnail: one file.
    let now = media_files(&app);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(
        now.iter().all(|f| !stored.contains(f)),
        "the replaced files are gone: {now:?}"
    );
    let p = app.admin_get("/api/v1/admin/products").await;
    let small = p["products"][0]["image"].as_str().unwrap().to_owned();
    let (_, _, bytes) = fetch(&app, &small).await;
    assert_eq!(dimensions(&bytes), (300, 200), "never enlarged");
    let (s, _, _) = fetch(&app, &image).await;
    assert_eq!(s, 404, "the old picture is no longer served");

    // Removed (console), then the API's DELETE answers the same.
    let p = owner
        .post("/admin/products/pic/image/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(media_files(&app).is_empty());
    let (s, v) = admin_send(&app, "DELETE", "/api/v1/admin/products/pic/image", None).await;
    assert_eq!((s, &v["image"]), (200, &Value::Null), "{v}");
    let images = audit(&app, "product.image").await;
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[0].entry.before.as_ref().unwrap()["image"],
        image.trim_start_matches("/media/")
    );
    assert_eq!(audit(&app, "product.image_remove").await.len(), 1);
}
both_backends!(pictures_are_resized_cached_and_refused_precisely);

/// The storefront's product slugs in page order.
async fn storefront_order(app: &TestApp) -> Vec<String> {
    let (_, _, html) = fetch(app, "/").await;
    let html = String::from_utf8(html).unwrap();
    html.split("data-testid=\"product-")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect()
}

async fn moving_products_and_categories_changes_the_storefront(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    for (slug, category) in [
        ("a", "Cards"),
        ("b", "Cards"),
        ("c", "Cards"),
        ("d", "Games"),
        ("e", ""),
    ] {
        let (s, v) = app
            .admin_post(
                "/api/v1/admin/products",
                json!({"slug": slug, "title": slug, "price": 100, "currency": "CNY",
                       "delivery": "manual", "category": category}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    assert_eq!(storefront_order(&app).await, ["a", "b", "c", "d", "e"]);
    let mut owner = Browser::signed_in(&app).await;
    let list = owner.get("/admin/products").await;
    let csrf = list.csrf();
    assert!(list.testid("up-a").is_none() && list.testid("down-c").is_none());
    assert!(list.testid("up-d").is_none(), "first of its category");

    let p = owner
        .post(
            "/admin/products/c/move",
            &[("csrf", &csrf), ("direction", "up")],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/admin/products"));
    assert_eq!(storefront_order(&app).await, ["a", "c", "b", "d", "e"]);
    // Without the token: nothing moves.
    let p = owner
        .post("/admin/products/c/move", &[("direction", "up")])
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(storefront_order(&app).await, ["a", "c", "b", "d", "e"]);

    let cats = owner.get("/admin/categories").await;
    assert_eq!(cats.status, 200, "{}", cats.body);
    let p = owner
        .post(
            "/admin/categories/move",
            &[("csrf", &csrf), ("name", "Games"), ("direction", "up")],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/categories?done=moved"),
        "{}",
        p.body
    );
    assert_eq!(storefront_order(&app).await, ["d", "a", "c", "b", "e"]);
    // The buyer API lists the same order.
    let api = app.get_json("/api/v1/products").await;
    let slugs: Vec<&str> = api["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["d", "a", "c", "b", "e"]);

    // API twins: move, and sort_order in PATCH.
    let (s, v) = app
        .admin_post("/api/v1/admin/products/b/move", json!({"direction": "up"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(storefront_order(&app).await, ["d", "a", "b", "c", "e"]);
    let (s, v) = app
        .admin_post("/api/v1/admin/products/a/move", json!({"direction": "up"}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("cannot_move")),
        "{v}"
    );
    let (s, v) = app
        .admin_post(
            "/api/v1/admin/products/a/move",
            json!({"direction": "sideways"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_direction")),
        "{v}"
    );
    let (s, v) = admin_send(
        &app,
        "PATCH",
        "/api/v1/admin/products/a",
        Some(json!({"sort_order": 99})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(storefront_order(&app).await, ["d", "b", "c", "a", "e"]);
    let (s, v) = admin_send(
        &app,
        "PATCH",
        "/api/v1/admin/categories/Cards",
        Some(json!({"sort_order": 0})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(storefront_order(&app).await, ["b", "c", "a", "d", "e"]);

    let moves = audit(&app, "product.move").await;
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].entry.actor, format!("user:{USER}"));
    assert_eq!(
        moves[1].entry.after.as_ref().unwrap()["sort_order"]["c"],
        20
    );
    assert_eq!(audit(&app, "category.move").await.len(), 1);
}
both_backends!(moving_products_and_categories_changes_the_storefront);

async fn categories_are_created_renamed_and_deleted(backend: Backend) {
    let (app, _clock) = spawn(backend, "").await;
    let mut owner = Browser::signed_in(&app).await;
    for (lang, says) in [("zh-CN", "添加分类"), ("en", "Add a category")] {
        let p = owner.get(&format!("/admin/categories?lang={lang}")).await;
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(p.body.contains(says), "{lang}");
    }
    let csrf = owner.get("/admin/categories").await.csrf();
    // Console: create (CSRF enforced), a taken name refused.
    let p = owner
        .post("/admin/categories", &[("name", "Gift cards")])
        .await;
    assert_eq!(p.status, 403);
    let p = owner
        .post(
            "/admin/categories",
            &[("csrf", &csrf), ("name", " Gift cards ")],
        )
        .await;
    assert_eq!(
        (p.status, p.location()),
        (303, "/admin/categories?done=created")
    );
    let p = owner
        .post(
            "/admin/categories",
            &[("csrf", &csrf), ("name", "Gift cards")],
        )
        .await;
    assert_eq!(p.status, 409);
    assert!(p
        .testid("categories-error")
        .unwrap()
        .contains("already exists"));
    let p = owner
        .post("/admin/categories", &[("csrf", &csrf), ("name", "  ")])
        .await;
    assert_eq!(p.status, 422);

    // API: create, list, duplicate.
    let (s, v) = app
        .admin_post("/api/v1/admin/categories", json!({"name": "Games"}))
        .await;
    assert_eq!((s, v["sort_order"].as_i64()), (201, Some(20)), "{v}");
    let (s, v) = app
        .admin_post("/api/v1/admin/categories", json!({"name": "Games"}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("category_exists"))
    );
    for slug in ["g1", "g2"] {
        let (s, _) = app
            .admin_post(
                "/api/v1/admin/products",
                json!({"slug": slug, "title": slug, "price": 100, "currency": "CNY",
                       "delivery": "manual", "category": "Games"}),
            )
            .await;
        assert_eq!(s, 201);
    }

    // Rename in the console: its products follow.
    let p = owner
        .post(
            "/admin/categories/rename",
            &[("csrf", &csrf), ("name", "Games"), ("new_name", "PC games")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let products = app.admin_get("/api/v1/admin/products").await;
    assert!(products["products"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["category"] == "PC games"));
    let p = owner
        .post(
            "/admin/categories/rename",
            &[
                ("csrf", &csrf),
                ("name", "PC games"),
                ("new_name", "Gift cards"),
            ],
        )
        .await;
    assert_eq!(p.status, 409, "taken");
    let (s, v) = admin_send(
        &app,
        "PATCH",
        "/api/v1/admin/categories/nope",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("category_not_found"))
    );

    // Delete through the API: the products stay, without a category.
    let (s, v) = admin_send(&app, "DELETE", "/api/v1/admin/categories/PC%20games", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"deleted": true, "uncategorised": 2}));
    let products = app.admin_get("/api/v1/admin/products").await;
    assert!(products["products"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["category"] == ""));
    assert_eq!(app.product("g1").await["slug"], "g1", "still in the shop");
    // And the console's delete.
    let p = owner
        .post(
            "/admin/categories/delete",
            &[("csrf", &csrf), ("name", "Gift cards")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(
        app.admin_get("/api/v1/admin/categories").await["categories"],
        json!([])
    );

    assert_eq!(audit(&app, "category.create").await.len(), 2);
    let renamed = audit(&app, "category.update").await;
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0].entry.before.as_ref().unwrap()["name"], "Games");
    assert_eq!(renamed[0].entry.after.as_ref().unwrap()["name"], "PC games");
    let deleted = audit(&app, "category.delete").await;
    assert_eq!(deleted.len(), 2);
    assert_eq!(
        deleted[1].entry.before.as_ref().unwrap()["products"],
        json!(["g1", "g2"])
    );
}
both_backends!(categories_are_created_renamed_and_deleted);
