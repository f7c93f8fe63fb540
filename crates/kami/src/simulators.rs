//! The simulators the binary wires into its own server: with `--demo`, one channel of every
//! real protocol talking to in-process gateway simulators (fresh keys each start), and for any
//! sandbox channel without a `gateway`, the sandbox's pay page. The server itself never links
//! kami-sim; this is the extension it is handed (`kami_server::BuildOptions::extension`).

use kami_server::{Extension, ExtensionContext, Extra};
use kami_sim::gateways::{GatewayOptions, Gateways};
use kami_sim::sandbox::SandboxSim;

/// The extension for `kami serve` (`demo`: also the gateway simulators).
pub fn extension(demo: bool) -> Extension {
    Box::new(move |cx: &ExtensionContext<'_>| {
        let mut extra = Extra::default();
        if demo {
            let gw = Gateways::generate(cx.public_url, GatewayOptions::default())
                .map_err(|e| format!("gateway simulators: {e}"))?;
            extra.channels = gw
                .channels(cx.http)
                .map_err(|e| format!("gateway simulators: {e}"))?;
            extra.routes = gw.router.clone();
            extra.qr_link = Some(Box::new(kami_sim::gateways::payer_page));
            extra.jsapi_bridge = Some(kami_sim::wechatpay::BRIDGE_SCRIPT.to_owned());
        }
        for local in cx.local_sandboxes {
            let sim = SandboxSim::new(local.secret.clone(), Default::default());
            extra.routes = extra.routes.merge(sim.router());
        }
        Ok(extra)
    })
}
