//! Sandbox channels with faults a test controls while the server runs: a share of create
//! calls fails (`SYSTEM_ERROR`, the gateway's fault), or every create hangs. Payments made
//! through them are real sandbox payments (the local sandbox simulator, [`SANDBOX_SECRET`]),
//! so orders routed to them can be paid, notified, queried and closed like any other.
//! Several servers (two kami processes on one database) may share one [`Faults`].
//!
//! With [`Faults::name_refs`] a channel also behaves like a gateway that knows trades by its
//! own id (Stripe, PayPal): create returns `gw-<trade_no>` as the gateway reference, and query,
//! close and refund fail unless kami names that reference back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kami_core::{ChannelId, Method};
use kami_pay::settings::{BuildContext, SandboxSettings};
use kami_pay::{
    Ack, AckResponse, CreatePayment, Created, NotifyVerdict, PayError, PaymentChannel,
    RawNotification, RefundOutcome, RefundRequest, TradeRef, TradeState,
};
use kami_server::{BuildOptions, ExtensionContext, Extra};
use kami_sim::sandbox::SandboxSim;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::SANDBOX_SECRET;

/// The faults of one or more channels, changed at any time.
#[derive(Clone)]
pub struct Faults(Arc<Inner>);

struct Inner {
    state: Mutex<State>,
    creates: AtomicU64,
    failed: AtomicU64,
}

struct State {
    /// Create returns a gateway reference that query, close and refund must name.
    name_refs: bool,
    /// `query gw-…`, `close gw-…`, `refund gw-… pi-…` for each call that named it.
    refs_seen: Vec<String>,
    /// Share of creates that fail, 0.0 to 1.0.
    fail_ratio: f64,
    hang: Option<Duration>,
    rng: StdRng,
}

impl Faults {
    /// No faults; `seed` makes the failing share reproducible.
    pub fn new(seed: u64) -> Faults {
        Faults(Arc::new(Inner {
            state: Mutex::new(State {
                name_refs: false,
                refs_seen: Vec::new(),
                fail_ratio: 0.0,
                hang: None,
                rng: StdRng::seed_from_u64(seed),
            }),
            creates: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }))
    }

    /// This share of creates fails from now on.
    pub fn fail_ratio(&self, ratio: f64) {
        self.0.state.lock().unwrap().fail_ratio = ratio;
    }

    /// Every create waits this long before answering (`None`: no delay).
    pub fn hang(&self, d: Option<Duration>) {
        self.0.state.lock().unwrap().hang = d;
    }

    /// From now on, act like a gateway that knows trades by its own reference.
    pub fn name_refs(&self) {
        self.0.state.lock().unwrap().name_refs = true;
    }

    /// The calls that named the gateway reference, in order.
    pub fn refs_seen(&self) -> Vec<String> {
        self.0.state.lock().unwrap().refs_seen.clone()
    }

    /// Create calls made so far, and how many of them failed on purpose.
    pub fn creates(&self) -> u64 {
        self.0.creates.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }

    fn next(&self) -> (bool, Option<Duration>) {
        self.0.creates.fetch_add(1, Ordering::Relaxed);
        let mut s = self.0.state.lock().unwrap();
        let fail = s.fail_ratio > 0.0 && s.rng.gen::<f64>() < s.fail_ratio;
        if fail {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
        }
        (fail, s.hang)
    }

    /// In reference mode, whether `call` named the trade's reference (recorded if so).
    fn check_ref(
        &self,
        call: &str,
        trade_no: &str,
        gateway_ref: Option<&str>,
    ) -> Result<(), PayError> {
        let mut s = self.0.state.lock().unwrap();
        if !s.name_refs {
            return Ok(());
        }
        let expected = format!("gw-{trade_no}");
        if gateway_ref != Some(expected.as_str()) {
            return Err(PayError::Malformed(format!(
                "{call} of {trade_no} named {gateway_ref:?}, not {expected}"
            )));
        }
        s.refs_seen.push(format!("{call} {expected}"));
        Ok(())
    }
}

/// A sandbox channel whose create calls obey [`Faults`].
pub struct FaultyChannel {
    inner: Arc<dyn PaymentChannel>,
    faults: Faults,
}

#[async_trait]
impl PaymentChannel for FaultyChannel {
    fn id(&self) -> &ChannelId {
        self.inner.id()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn methods(&self) -> &[Method] {
        self.inner.methods()
    }
    fn priority(&self) -> i32 {
        self.inner.priority()
    }
    async fn create(&self, req: &CreatePayment) -> Result<Created, PayError> {
        let (fail, hang) = self.faults.next();
        if let Some(d) = hang {
            tokio::time::sleep(d).await;
        }
        if fail {
            return Err(PayError::Gateway {
                code: "SYSTEM_ERROR".into(),
                message: "simulated gateway failure".into(),
            });
        }
        let mut made = self.inner.create(req).await?;
        if self.faults.0.state.lock().unwrap().name_refs {
            made.gateway_ref = Some(format!("gw-{}", req.trade_no));
        }
        Ok(made)
    }
    fn verify_notification(&self, raw: &RawNotification) -> Result<NotifyVerdict, PayError> {
        self.inner.verify_notification(raw)
    }
    fn ack(&self, ack: Ack) -> AckResponse {
        self.inner.ack(ack)
    }
    async fn query(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let named = trade.gateway_ref.as_deref();
        self.faults.check_ref("query", &trade.trade_no, named)?;
        self.inner.query(trade).await
    }
    async fn close(&self, trade: &TradeRef) -> Result<TradeState, PayError> {
        let named = trade.gateway_ref.as_deref();
        self.faults.check_ref("close", &trade.trade_no, named)?;
        self.inner.close(trade).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, PayError> {
        let named = req.gateway_ref.as_deref();
        self.faults.check_ref("refund", &req.trade_no, named)?;
        if self.faults.0.state.lock().unwrap().name_refs && req.gateway_trade_no.is_none() {
            return Err(PayError::Malformed(
                "refund names no gateway payment".into(),
            ));
        }
        self.inner.refund(req).await
    }
}

/// One faulty channel to add: id, priority, its faults.
#[derive(Clone)]
pub struct FaultySpec {
    pub id: &'static str,
    pub priority: i32,
    pub faults: Faults,
}

/// Build options that mount the sandbox simulator and add these channels (method `sandbox`,
/// secret [`SANDBOX_SECRET`], talking to this server's simulator).
pub fn faulty_sandboxes(specs: Vec<FaultySpec>) -> BuildOptions {
    BuildOptions {
        demo: false,
        clock: None,
        extension: Some(Box::new(move |cx: &ExtensionContext<'_>| {
            let mut extra = Extra::default();
            for local in cx.local_sandboxes {
                let sim = SandboxSim::new(local.secret.clone(), Default::default());
                extra.routes = extra.routes.merge(sim.router());
            }
            let settings: SandboxSettings = serde_json::from_value(serde_json::json!({
                "secret": SANDBOX_SECRET,
                "allow_sandbox": true,
            }))
            .map_err(|e| e.to_string())?;
            for spec in &specs {
                let id = ChannelId::parse(spec.id).map_err(|e| e.to_string())?;
                let bcx = BuildContext {
                    id: &id,
                    methods: &[Method::Sandbox],
                    priority: spec.priority,
                    http: cx.http,
                };
                let inner = settings.build(&bcx, SANDBOX_SECRET.as_bytes().to_vec(), cx.public_url);
                extra.channels.push(Arc::new(FaultyChannel {
                    inner: Arc::new(inner),
                    faults: spec.faults.clone(),
                }));
            }
            Ok(extra)
        })),
    }
}
