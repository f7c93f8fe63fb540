//! `kami serve --demo`: a sandbox channel, a small catalogue with card keys, an admin token,
//! and a printed walkthrough to buy something end to end.

use kami_core::{Currency, Money, SecretToken, Slug};
use kami_store::{Delivery, NewProduct, Store, StoreError};

use crate::config::{ChannelKind, Config};
use kami_core::clock::now_ms;

/// Add a sandbox channel if the configuration has none.
pub fn add_sandbox_channel(config: &mut Config) {
    if config
        .channels
        .iter()
        .any(|c| c.kind == ChannelKind::Sandbox && c.enabled)
    {
        return;
    }
    // Built through the config parser so it gets exactly the defaults a user's file would.
    const SNIPPET: &str =
        "[[channels]]\nid = \"sandbox\"\nkind = \"sandbox\"\nmethods = [\"sandbox\"]\n";
    match Config::from_toml_str(SNIPPET) {
        Ok(loaded) => config.channels.extend(loaded.config.channels),
        Err(e) => tracing::error!("demo sandbox channel: {e}"),
    }
}

/// The demo's rate table, unless the configuration has one: PayPal (which never takes CNY)
/// can then charge every CNY product in USD, at a rate the console's settings page shows.
pub fn add_rates(config: &mut Config) {
    if !config.fx.rates().is_empty() {
        return;
    }
    const SNIPPET: &str = "[fx]\nrounding = \"up\"\n[fx.rates]\nUSD = \"7.2\"\nEUR = \"7.8\"\nHKD = \"0.92\"\nJPY = \"0.048\"\n";
    match Config::from_toml_str(SNIPPET) {
        Ok(loaded) => config.fx = loaded.config.fx,
        Err(e) => tracing::error!("demo rates: {e}"),
    }
}

struct DemoProduct {
    slug: &'static str,
    title: &'static str,
    description: &'static str,
    price: i64,
    delivery: Delivery,
    keys: usize,
    loop_key: Option<&'static str>,
    category: &'static str,
    tiers: &'static str,
    /// Own prices in other currencies, stored form (`USD:139`).
    prices: &'static str,
}

const PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        slug: "demo-game-key",
        title: "Demo game key",
        description: "A made-up game activation key from the demo stock.",
        price: 1230,
        delivery: Delivery::Auto,
        keys: 50,
        loop_key: None,
        category: "Games",
        tiers: "5:1100,10:990",
        prices: "USD:139",
    },
    DemoProduct {
        slug: "demo-gift-card",
        title: "Demo gift card ¥50",
        description: "Only three in stock: watch it sell out.",
        price: 5000,
        delivery: Delivery::Auto,
        keys: 3,
        loop_key: None,
        category: "Gift cards",
        tiers: "",
        prices: "",
    },
    DemoProduct {
        slug: "demo-tutorial",
        title: "Demo tutorial download link",
        description: "One shared link for every buyer (a reusable \"loop\" key).",
        price: 100,
        delivery: Delivery::Auto,
        keys: 0,
        loop_key: Some("https://example.com/demo-tutorial (demo link)"),
        category: "Downloads",
        tiers: "",
        prices: "",
    },
    DemoProduct {
        slug: "demo-recharge",
        title: "Demo manual recharge service",
        description: "Delivered by hand by the seller.",
        price: 2000,
        delivery: Delivery::Manual,
        keys: 0,
        loop_key: None,
        category: "Services",
        tiers: "",
        prices: "",
    },
];

/// Priced in US dollars: PayPal takes no CNY, so the demo's PayPal channel sells these.
const USD_PRODUCTS: &[DemoProduct] = &[DemoProduct {
    slug: "demo-paypal-key",
    title: "Demo game key (USD, PayPal)",
    description: "Priced in US dollars: pay with PayPal on the simulator.",
    price: 199,
    delivery: Delivery::Auto,
    keys: 20,
    loop_key: None,
    category: "Games",
    tiers: "",
    prices: "",
}];

/// Seed the demo catalogue (skipping products that already exist) and create an admin token.
/// Returns the token.
pub async fn seed(store: &Store) -> Result<String, StoreError> {
    let now = now_ms();
    let priced = PRODUCTS
        .iter()
        .map(|p| (p, Currency::Cny))
        .chain(USD_PRODUCTS.iter().map(|p| (p, Currency::Usd)));
    for (p, currency) in priced {
        let slug = Slug::parse(p.slug).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        let price = Money::new(p.price, currency)?;
        let new = NewProduct {
            slug,
            title: p.title.into(),
            description: p.description.into(),
            price,
            delivery: p.delivery,
            manual_stock: None,
            category: p.category.into(),
            sort_order: 0,
            tiers: kami_core::PriceTiers::parse(p.tiers)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?,
            min_quantity: 1,
            max_quantity: if p.loop_key.is_some() { 1 } else { 100 },
            prices: kami_core::OwnPrices::parse(p.prices, currency)
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?
                .iter()
                .collect(),
        };
        match store.create_product(new, now).await {
            Ok(()) => {}
            Err(StoreError::ProductExists) => continue,
            Err(e) => return Err(e),
        }
        let keys: Vec<String> = (1..=p.keys)
            .map(|i| {
                format!(
                    "DEMO-{}-{:04}-{}",
                    p.slug.to_uppercase(),
                    i,
                    hex::encode(rand::random::<[u8; 4]>())
                )
            })
            .collect();
        if !keys.is_empty() {
            store
                .import_cards(p.slug, keys, false, now, &|_| {})
                .await?;
        }
        if let Some(k) = p.loop_key {
            store
                .import_cards(p.slug, vec![k.to_owned()], true, now, &|_| {})
                .await?;
        }
    }
    let token = SecretToken::generate();
    store.create_admin_token("demo", &token.hash(), now).await?;
    Ok(token.expose().to_owned())
}

/// What `--demo` prints once the server listens.
pub fn walkthrough(base: &str, admin_token: &str) -> String {
    format!(
        r#"
kami demo shop is running at {base}

In a browser: open {base}/ , pick a product, pay with any method (Alipay and WeChat show a
QR code with a "Demo: open the simulator's payment page" link; QQ Wallet (Epay) and Sandbox
open the simulator's cashier; PayPal sells the USD-priced "demo-paypal-key"), press Pay there,
and watch the key appear on the checkout page.
Find the order again at {base}/lookup with its email and query password.

Or with curl (sandbox payment channel, simulator on this server):

  1. See the catalogue:
       curl -s {base}/api/v1/products

  2. Create an order (note "order_no", "access_token" and "payment.url" in the answer):
       curl -s -X POST {base}/api/v1/orders -H 'content-type: application/json' \
         -d '{{"product":"demo-game-key","quantity":1,"email":"you@example.com","method":"sandbox"}}'

  3. Pay: open payment.url in a browser and press "Pay" (or: curl -s -X POST "PAYMENT_URL").
     The simulator sends a signed notification to {base}/pay/notify/sandbox.

  4. Read your order and its key (long-polls up to 10 s until it is paid):
       curl -s "{base}/api/v1/orders/ORDER_NO?wait=10" -H 'authorization: Bearer ACCESS_TOKEN'

Admin API token for this demo: {admin_token}
       curl -s {base}/api/v1/admin/orders -H 'authorization: Bearer {admin_token}'
"#
    )
}
