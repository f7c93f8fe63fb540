//! The gateway's side of a [`Shop`]: sandbox notifications signed like the gateway's, and
//! paying through a simulator's own pages like a buyer's browser.

use serde_json::Value;

use crate::html::{attribute, unescape};
use crate::{hex_rand, Shop};

/// The secret of the `sandbox` channel every [`crate::TestApp`] has.
pub const SANDBOX_SECRET: &str = "test-only-sandbox-secret";

/// A sandbox `paid` notification for `trade_no`, signed with `secret` as the gateway signs it
/// (a fresh `notify_id` each time).
pub fn notification_params(
    trade_no: &str,
    amount: &str,
    currency: &str,
    gateway_trade_no: &str,
    secret: &[u8],
) -> Vec<(String, String)> {
    let params = vec![
        ("trade_no".to_owned(), trade_no.to_owned()),
        ("gateway_trade_no".to_owned(), gateway_trade_no.to_owned()),
        ("amount".to_owned(), amount.to_owned()),
        ("currency".to_owned(), currency.to_owned()),
        ("status".to_owned(), "paid".to_owned()),
        ("paid_at".to_owned(), "1795000000000".to_owned()),
        ("notify_id".to_owned(), hex_rand()),
    ];
    kami_pay::sandbox::signed(secret, params)
}

/// The page a buyer opens for an order's payment: the redirect URL, the QR code's URL, or for
/// a WeChat `weixin://` code the simulator's scan page (what scanning it with the app shows).
pub fn payment_page(sim_base: &str, order: &Value) -> String {
    let p = &order["payment"];
    match p["action"].as_str() {
        Some("redirect") => p["url"].as_str().expect("redirect url").to_owned(),
        Some("qr") => {
            let code = p["qr_code"].as_str().expect("qr_code");
            if code.starts_with(kami_sim::wechatpay::CODE_URL_PREFIX) {
                kami_sim::wechatpay::scan_page_url(sim_base, code)
                    .unwrap_or_else(|| panic!("odd WeChat code_url {code}"))
            } else {
                code.to_owned()
            }
        }
        other => panic!("unknown payment action {other:?}: {order}"),
    }
}

impl Shop {
    /// A notification signed with the sandbox secret, as the gateway would send it.
    pub fn notification(
        &self,
        trade_no: &str,
        amount: &str,
        currency: &str,
        gateway_trade_no: &str,
    ) -> Vec<(String, String)> {
        notification_params(
            trade_no,
            amount,
            currency,
            gateway_trade_no,
            SANDBOX_SECRET.as_bytes(),
        )
    }

    /// POST a form notification to the `sandbox` channel; (status, body).
    pub async fn send_notification(&self, params: &[(String, String)]) -> (u16, String) {
        self.send_notification_to("sandbox", params).await
    }

    /// POST a form notification to the sandbox-kind channel `channel`; (status, body).
    pub async fn send_notification_to(
        &self,
        channel: &str,
        params: &[(String, String)],
    ) -> (u16, String) {
        let r = self
            .http
            .post(self.url(&format!("/pay/notify/{channel}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(params).unwrap())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Press "Pay" in the sandbox simulator for a created order.
    pub async fn pay(&self, order: &Value) {
        let (status, body) = self.pay_with(order, "normal").await;
        assert_eq!(status, 200, "{body}");
    }

    /// Press "Pay" with a simulator control (`normal`, `drop`, `duplicate`); (status, body).
    pub async fn pay_with(&self, order: &Value, notify: &str) -> (u16, String) {
        let url = order["payment"]["url"].as_str().expect("payment url");
        let r = self
            .http
            .post(url)
            .header("accept", "application/json")
            .form(&[("notify", notify)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Set a gateway simulator's controls (e.g. `fail_creates`) through the controls form of
    /// the page `order` pays on; the simulator must accept them.
    pub async fn sim_controls(&self, order: &Value, controls: &[(&str, &str)]) {
        let page = payment_page(&self.sim_base, order);
        let mut form = vec![("action", "controls")];
        form.extend_from_slice(controls);
        let r = self.http.post(&page).form(&form).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, 200, "{controls:?}: {}", r.text().await.unwrap());
    }

    /// Pay like a buyer's browser: open the payment page (a QR code's page for QR actions),
    /// then submit its first form with the simulator's `notify` control. (status, body)
    pub async fn pay_in_browser(&self, order: &Value, notify: &str) -> (u16, String) {
        self.pay_in_browser_with(order, &[("notify", notify)]).await
    }

    /// As `pay_in_browser`, with any simulator controls (e.g. `amount` to pay a different sum):
    /// the form's hidden fields are sent as they are, `fields` added (or replacing them).
    /// The in-process `sandbox` channel's page is pressed directly, as [`Shop::pay_with`].
    pub async fn pay_in_browser_with(
        &self,
        order: &Value,
        fields: &[(&str, &str)],
    ) -> (u16, String) {
        if order["payment"]["channel"] == "sandbox" {
            let notify = fields
                .iter()
                .find(|(k, _)| *k == "notify")
                .map_or("normal", |(_, v)| *v);
            return self.pay_with(order, notify).await;
        }
        let target = payment_page(&self.sim_base, order);
        assert!(
            target.starts_with(&self.sim_base),
            "the payment page {target} is not on the simulators at {}",
            self.sim_base
        );
        let page = self.http.get(&target).send().await.unwrap();
        let page_url = page.url().clone();
        let status = page.status();
        let html = page.text().await.unwrap();
        assert_eq!(status, 200, "GET {page_url}: {html}");
        const FORM: &str = "<form method=\"post\" action=\"";
        let form = html
            .split_once(FORM)
            .map(|(_, rest)| rest.split("</form>").next().unwrap_or(rest))
            .unwrap_or_else(|| panic!("no form on {page_url}: {html}"));
        let action = unescape(form.split('"').next().unwrap_or_default());
        let url = page_url.join(&action).unwrap();
        let mut sent: Vec<(String, String)> = form
            .split("<input")
            .skip(1)
            .filter_map(|t| {
                let tag = t.split('>').next()?;
                if attribute(tag, "type").as_deref() != Some("hidden") {
                    return None;
                }
                let name = attribute(tag, "name")?;
                if fields.iter().any(|(k, _)| *k == name) {
                    return None;
                }
                Some((name, attribute(tag, "value").unwrap_or_default()))
            })
            .collect();
        sent.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let r = self.http.post(url).form(&sent).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}
