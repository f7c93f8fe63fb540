//! A browser for the console: keeps cookies, never follows redirects, reads form tokens.

use std::collections::HashMap;
use std::sync::Arc;

use kami_core::ManualClock;
use kami_store::{AuditFilter, AuditRecord};
use kami_testkit::{simulators, Backend, TestApp};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

pub const USER: &str = "owner";
pub const PASSWORD: &str = "correct horse battery";

/// A test server on a manual clock (set to the wall clock at start) with the admin user
/// [`USER`] / [`PASSWORD`].
pub async fn spawn(backend: Backend, extra: &str) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(kami_core::clock::now_ms()));
    let mut opts = simulators(false);
    opts.clock = Some(clock.clone());
    let app = TestApp::spawn_opts(backend, extra, opts).await;
    let hash = kami_server::services::passwords::hash_blocking(PASSWORD).unwrap();
    assert!(app
        .state
        .store
        .create_admin_user(USER, &hash, 0)
        .await
        .unwrap());
    (app, clock)
}

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
    /// The text of the element with this `data-testid` (up to the next `<`).
    pub fn testid(&self, id: &str) -> Option<String> {
        let marker = format!("data-testid=\"{id}\"");
        let at = self.body.find(&marker)?;
        let rest = &self.body[at..];
        let start = rest.find('>')? + 1;
        let end = rest[start..].find('<')?;
        Some(rest[start..start + end].trim().to_owned())
    }
}

pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("console-test/1.0")
                .build()
                .unwrap(),
            base: app.state.public_url.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    /// A POST with a raw body (what the console's script sends for a card import).
    pub async fn post_raw(&mut self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "text/plain; charset=utf-8");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.body(body).send().await.unwrap();
        self.finish(r).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[]).await
    }

    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        self.finish(r).await
    }

    /// The sign-in form, filled and sent (with `next`).
    pub async fn sign_in_to(&mut self, user: &str, password: &str, next: &str) -> Page {
        let form = self.get("/admin/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/admin/login",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }

    pub async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        self.sign_in_to(user, password, "/admin").await
    }

    /// Signed in as [`USER`]; panics otherwise.
    pub async fn signed_in(app: &TestApp) -> Browser {
        let mut b = Browser::new(app);
        let p = b.sign_in(USER, PASSWORD).await;
        assert_eq!((p.status, p.location()), (303, "/admin"), "{}", p.body);
        b
    }

    /// Whether the session cookie opens the overview (else: sent to the sign-in page).
    pub async fn is_signed_in(&mut self) -> bool {
        let p = self.get("/admin").await;
        match p.status {
            200 => true,
            303 => {
                assert!(p.location().starts_with("/admin/login"), "{}", p.location());
                false
            }
            s => panic!("GET /admin: {s} {}", p.body),
        }
    }
}

/// Audit rows with this action, newest first.
pub async fn audit(app: &TestApp, action: &str) -> Vec<AuditRecord> {
    app.state
        .store
        .audit_log(AuditFilter {
            limit: 500,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.action == action)
        .collect()
}
