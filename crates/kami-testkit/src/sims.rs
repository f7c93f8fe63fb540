//! The simulators a test server mounts through the server's build extension, as the binary's
//! `--demo` does: the sandbox's pay page for every local sandbox channel and, on request, every
//! gateway simulator with one channel of each kind wired to it (fast notification retries).

use std::sync::{Arc, Mutex};

use kami_server::{BuildOptions, ExtensionContext, Extra};
use kami_sim::gateways::{GatewayOptions, Gateways};
use kami_sim::sandbox::SandboxSim;

/// Where [`simulators_keeping`] leaves the gateway simulators it mounted.
pub type GatewaysSlot = Arc<Mutex<Option<Arc<Gateways>>>>;

/// Build options mounting the sandbox pay pages and, with `gateways`, the gateway simulators
/// (channels `alipay-sim`, `wechat-sim`, `epay-sim`).
pub fn simulators(gateways: bool) -> BuildOptions {
    simulators_into(gateways, None)
}

/// [`simulators`]`(true)`, leaving the simulators in `slot` once built (their keys, for
/// channels a test adds through the admin API).
pub fn simulators_keeping(slot: GatewaysSlot) -> BuildOptions {
    simulators_into(true, Some(slot))
}

fn simulators_into(gateways: bool, slot: Option<GatewaysSlot>) -> BuildOptions {
    BuildOptions {
        demo: false,
        clock: None,
        extension: Some(Box::new(move |cx: &ExtensionContext<'_>| {
            let mut extra = if gateways {
                let (extra, gw) = gateway_simulators(cx, None)?;
                if let Some(slot) = &slot {
                    *slot.lock().map_err(|e| e.to_string())? = Some(Arc::new(gw));
                }
                extra
            } else {
                Extra::default()
            };
            mount_sandboxes(cx, kami_core::clock::system(), &mut extra);
            Ok(extra)
        })),
    }
}

/// [`simulators`]`(false)` on a manual clock: the server and its sandbox pay pages both read
/// `clock` (link expiry too), so tests can place and pay orders at any instant.
pub fn sandbox_on_clock(clock: kami_core::SharedClock) -> BuildOptions {
    let sim_clock = clock.clone();
    BuildOptions {
        demo: false,
        clock: Some(clock),
        extension: Some(Box::new(move |cx: &ExtensionContext<'_>| {
            let mut extra = Extra::default();
            mount_sandboxes(cx, sim_clock.clone(), &mut extra);
            Ok(extra)
        })),
    }
}

/// The sandbox pay pages of every local sandbox channel, on `clock`, added to `extra`; the
/// last simulator mounted (the test server has one: the `sandbox` channel's).
fn mount_sandboxes(
    cx: &ExtensionContext<'_>,
    clock: kami_core::SharedClock,
    extra: &mut Extra,
) -> Option<Arc<SandboxSim>> {
    let mut last = None;
    for local in cx.local_sandboxes {
        let sim = SandboxSim::with_clock(local.secret.clone(), Default::default(), clock.clone());
        extra.routes = std::mem::take(&mut extra.routes).merge(sim.router());
        last = Some(sim);
    }
    last
}

/// The gateway simulators (fast retries) and their channels, on `clock` (`None`: the wall
/// clock).
fn gateway_simulators(
    cx: &ExtensionContext<'_>,
    clock: Option<kami_core::SharedClock>,
) -> Result<(Extra, Gateways), String> {
    let e = |e: kami_sim::gateways::GatewayError| e.to_string();
    let opts = GatewayOptions {
        fast_retries: true,
        clock,
    };
    let gw = Gateways::generate(cx.public_url, opts).map_err(e)?;
    let extra = Extra {
        channels: gw.channels(cx.http).map_err(e)?,
        routes: gw.router.clone(),
        qr_link: Some(Box::new(kami_sim::gateways::payer_page)),
        jsapi_bridge: Some(kami_sim::wechatpay::BRIDGE_SCRIPT.to_owned()),
    };
    Ok((extra, gw))
}

/// The simulators [`on_clock_keeping`] mounted, once the server is built.
#[derive(Clone, Default)]
pub struct KeptSims {
    sandbox: Arc<Mutex<Option<Arc<SandboxSim>>>>,
    gateways: GatewaysSlot,
}

/// The simulators of a [`crate::TestApp::spawn_with_sims`] server.
pub struct Sims {
    /// The `sandbox` channel's gateway.
    pub sandbox: Arc<SandboxSim>,
    /// Alipay, WeChat Pay and Epay (channels `alipay-sim`, `wechat-sim`, `epay-sim`).
    pub gateways: Arc<Gateways>,
}

impl KeptSims {
    pub(crate) fn take(&self) -> Sims {
        Sims {
            sandbox: self
                .sandbox
                .lock()
                .unwrap()
                .take()
                .expect("the sandbox simulator was built"),
            gateways: self
                .gateways
                .lock()
                .unwrap()
                .take()
                .expect("the gateway simulators were built"),
        }
    }
}

/// Every simulator (fast retries) and the server on `clock` (the gateway simulators' channels
/// too), the sandbox and gateway simulators left in `kept`.
pub(crate) fn on_clock_keeping(clock: kami_core::SharedClock, kept: KeptSims) -> BuildOptions {
    let sim_clock = clock.clone();
    BuildOptions {
        demo: false,
        clock: Some(clock),
        extension: Some(Box::new(move |cx: &ExtensionContext<'_>| {
            let (mut extra, gw) = gateway_simulators(cx, Some(sim_clock.clone()))?;
            *kept.gateways.lock().map_err(|e| e.to_string())? = Some(Arc::new(gw));
            let sandbox = mount_sandboxes(cx, sim_clock.clone(), &mut extra);
            *kept.sandbox.lock().map_err(|e| e.to_string())? = sandbox;
            Ok(extra)
        })),
    }
}
