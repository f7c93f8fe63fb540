//! The harness every simulator test shares (`mod support;`): a fake merchant whose notify
//! endpoint verifies notifications with kami's own channel, as kami's server does; servers on
//! port 0; waiting for a condition; form posts; RSA keys; and the Python SDK interop
//! environments. `bill` holds the scenarios every bill simulator runs.

#![allow(dead_code)] // each test binary uses its own part

pub mod bill;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use kami_core::{Currency, Money, OrderNo};
use kami_pay::{Ack, NotifyVerdict, PaymentChannel, RawNotification};

/// What the fake merchant saw.
#[derive(Default)]
pub struct Merchant {
    /// Answer failure to this many authentic notifications first.
    pub fail_first: AtomicU32,
    pub requests: AtomicU32,
    /// HTTP method of every notification request.
    pub methods: Mutex<Vec<String>>,
    pub verdicts: Mutex<Vec<NotifyVerdict>>,
    pub rejected: Mutex<Vec<String>>,
    /// Forms posted to a test's capture endpoint.
    pub captured: Mutex<Vec<Vec<(String, String)>>>,
}

impl Merchant {
    pub fn verdicts(&self) -> Vec<NotifyVerdict> {
        self.verdicts.lock().unwrap().clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().unwrap().clone()
    }
}

/// The state of the merchant's routes: what it saw, and the channel that verifies.
pub struct MerchantState<C> {
    pub merchant: Arc<Merchant>,
    pub channel: Arc<C>,
}

impl<C> MerchantState<C> {
    pub fn new(merchant: &Arc<Merchant>, channel: &Arc<C>) -> Arc<MerchantState<C>> {
        Arc::new(MerchantState {
            merchant: Arc::clone(merchant),
            channel: Arc::clone(channel),
        })
    }
}

/// A request as kami's server hands it to a channel.
pub fn raw_notification(
    method: &HttpMethod,
    query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> RawNotification {
    RawNotification {
        method: method.as_str().to_owned(),
        query: query.unwrap_or_default(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    }
}

/// The merchant's notify endpoint: verify, record, acknowledge (or fail on purpose).
pub async fn merchant_notify<C: PaymentChannel + 'static>(
    State(st): State<Arc<MerchantState<C>>>,
    method: HttpMethod,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let raw = raw_notification(&method, query, &headers, &body);
    let m = &st.merchant;
    m.requests.fetch_add(1, Ordering::SeqCst);
    m.methods.lock().unwrap().push(method.as_str().to_owned());
    let ack = match st.channel.verify_notification(&raw) {
        Ok(v) => {
            let failing = m
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                Ack::Failure
            } else {
                m.verdicts.lock().unwrap().push(v);
                Ack::Success
            }
        }
        Err(e) => {
            m.rejected.lock().unwrap().push(e.to_string());
            Ack::Failure
        }
    };
    let a = st.channel.ack(ack);
    (
        StatusCode::from_u16(a.status).unwrap(),
        [("content-type", a.content_type)],
        a.body,
    )
}

/// The merchant's notify endpoint at `path`; add a test's own routes, then its state.
pub fn merchant_routes<C: PaymentChannel + 'static>(path: &str) -> Router<Arc<MerchantState<C>>> {
    Router::new().route(path, any(merchant_notify::<C>))
}

/// A listener on 127.0.0.1 port 0 and its `http://` base URL.
pub async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Serve `app` on `listener` in the background.
pub fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// Immediately, then every 50 ms: `attempts` notification attempts in total.
pub fn fast_schedule(attempts: usize) -> Vec<Duration> {
    let mut schedule = vec![Duration::ZERO];
    schedule.extend(std::iter::repeat_n(Duration::from_millis(50), attempts - 1));
    schedule
}

/// Two RSA private keys (a merchant's, a gateway's) as PKCS#8 PEM, generated once per test
/// binary.
pub fn rsa_key_pems() -> (&'static str, &'static str) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    let (m, g) = KEYS.get_or_init(|| {
        let pem = || {
            kami_pay::crypto::RsaSigner::generate()
                .unwrap()
                .private_key_pem()
                .unwrap()
        };
        (pem(), pem())
    });
    (m, g)
}

pub fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::Cny).unwrap()
}

pub fn new_trade_no() -> OrderNo {
    OrderNo::generate("20240101120000")
}

pub fn now_ms() -> i64 {
    kami_core::clock::now_ms()
}

/// Wall-clock seconds, as protocol timestamps want them.
pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// Poll `probe` every 20 ms until it answers, for at most `tries` polls; then panic showing
/// `state()`.
pub async fn eventually<T, S: Debug>(
    tries: u32,
    mut probe: impl FnMut() -> Option<T>,
    state: impl Fn() -> S,
) -> T {
    for _ in 0..tries {
        if let Some(v) = probe() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached; state {:?}", state());
}

/// GET `url`: status and body.
pub async fn get_page(http: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// POST a form to `url` (asking for JSON when `json`): status and body.
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    json: bool,
) -> (StatusCode, String) {
    let mut req = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if json {
        req = req.header("accept", "application/json");
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Python of interop venv `venv` (under `target/interop-venv/`); fails the test, saying
/// how to get it, when it is missing. Interop tests are `#[ignore]`d for that reason.
pub fn interop_python(venv: &str, setup: &str) -> PathBuf {
    let python = workspace_root()
        .join("target/interop-venv")
        .join(venv)
        .join("bin/python");
    assert!(
        python.exists(),
        "needs the SDK interop environment: {} is missing; run `bash interop/{setup}`",
        python.display()
    );
    python
}

/// Pairs as a JSON array of `[key, value]` (the interop scripts' form encoding).
pub fn pairs_json(params: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Array(
        params
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect(),
    )
}

/// A fresh merchant for `channel` and its routes: the notify endpoint at `path` plus a
/// test's `more` routes (which share the merchant's state).
pub fn merchant_app<C: PaymentChannel + 'static>(
    path: &str,
    channel: &Arc<C>,
    more: Router<Arc<MerchantState<C>>>,
) -> (Arc<Merchant>, Router) {
    let merchant = Arc::new(Merchant::default());
    let routes = merchant_routes(path)
        .merge(more)
        .with_state(MerchantState::new(&merchant, channel));
    (merchant, routes)
}

/// Refund through `channel`, expecting a settled refund under `refund_no`; the amount.
pub async fn settled_refund<C: PaymentChannel>(
    channel: &C,
    trade_no: &str,
    refund_no: &str,
    amount: Money,
    total: Money,
) -> Result<Money, kami_pay::PayError> {
    let req = kami_pay::RefundRequest {
        gateway_ref: None,
        gateway_trade_no: None,
        trade_no: trade_no.to_owned(),
        refund_no: refund_no.into(),
        amount,
        total,
        reason: None,
    };
    channel.refund(&req).await.map(|o| {
        assert_eq!(o.refund_no, refund_no);
        assert!(o.settled);
        o.amount
    })
}
