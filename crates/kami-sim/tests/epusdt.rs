//! The USDT simulators against kami's own channels (create signatures checked byte-exactly,
//! a wrong byte refused) and the MD5 rules both ways against an independent Python
//! implementation (`interop/epusdt/check.py`: hashlib and the gateways' own formatting rules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kami_pay::epusdt::{signed, Flavor};
use kami_pay::tokenpay::{json_pairs, signature as tp_signature, verify as tp_verify};
use kami_sim::epusdt::{EpusdtFlavor, EpusdtSim, EpusdtSimConfig};
use serde_json::{json, Map, Value};

mod support;

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

/// The simulator accepts exactly what kami signs, in each gateway's number format, and
/// refuses the same request with one byte changed.
#[tokio::test]
async fn simulators_check_signatures_byte_exactly() {
    for (flavor, sign) in [
        (EpusdtFlavor::Epusdt, Flavor::Epusdt),
        (EpusdtFlavor::Bepusdt, Flavor::Bepusdt),
    ] {
        let mut cfg = EpusdtSimConfig::epusdt("tok");
        cfg.flavor = flavor;
        let sim: Arc<EpusdtSim> = EpusdtSim::new(cfg);
        let base = serve(sim.router()).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/sim/epusdt/api/v1/order/create-transaction");
        // 1,000,000.00 CNY: the amount where FormatFloat and %v differ.
        let body = signed(
            obj(
                json!({"order_id": "K1", "amount": 1000000.0, "notify_url": "http://x/n", "redirect_url": "http://x/r"}),
            ),
            "tok",
            sign,
        );
        let good: Value = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(good["status_code"], 200, "{flavor:?}: {good}");
        // The other gateway's rendering of that amount is a wrong byte here.
        let other = if sign == Flavor::Epusdt {
            Flavor::Bepusdt
        } else {
            Flavor::Epusdt
        };
        let mut wrong = signed(
            obj(
                json!({"order_id": "K2", "amount": 1000000.0, "notify_url": "http://x/n", "redirect_url": "http://x/r"}),
            ),
            "tok",
            other,
        );
        let r: Value = http
            .post(&url)
            .json(&wrong)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status_code"], 401, "{flavor:?}: {r}");
        wrong.insert("signature".into(), json!("0".repeat(32)));
        let r: Value = http
            .post(&url)
            .json(&wrong)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status_code"], 401);
        assert_eq!(sim.status("K1"), "waiting");
        assert_eq!(sim.status("K2"), "unknown");
    }
}

#[tokio::test]
#[ignore = "needs python3: bash interop/setup-epusdt.sh"]
async fn interop_epusdt_vectors_both_ways_with_python_hashlib() {
    let token = "epusdt_password_xasddawqe";
    let kami_signed: Vec<Value> = [
        (Flavor::Epusdt, json!({"order_id": "20220201030210321", "amount": 42, "notify_url": "http://example.com/notify", "redirect_url": "http://example.com/redirect"})),
        (Flavor::Epusdt, json!({"order_id": "K1", "amount": 28.8, "notify_url": "https://s/n", "redirect_url": "https://s/r"})),
        (Flavor::Bepusdt, json!({"order_id": "K2", "amount": 1000000.0, "notify_url": "https://s/n", "redirect_url": "https://s/r", "trade_type": "usdt.trc20", "timeout": 900})),
        (Flavor::Bepusdt, json!({"trade_id": "b3d2477c-d945-41da-96b7-f925bbd1b415", "order_id": "20250120001", "amount": 28.88, "actual_amount": "4.25", "token": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "block_transaction_id": "12ef6267b42e43959795cf31808d0cc72b3d0a48953ed19c61d4b6665a341d10", "status": 2})),
    ]
    .into_iter()
    .map(|(f, b)| {
        let flavor = if f == Flavor::Epusdt { "epusdt" } else { "bepusdt" };
        json!({"flavor": flavor, "body": Value::Object(signed(obj(b), token, f))})
    })
    .collect();
    assert_eq!(
        kami_signed[0]["body"]["signature"],
        "1cd4b52df5587cfb1968b0c0c6e156cd"
    );
    assert_eq!(
        kami_signed[3]["body"]["signature"],
        "3e5e6594fb8a65f6fd58f70c394bca3a"
    );
    let to_sign = json!([
        {"flavor": "epusdt", "body": {"trade_id": "202203251648208648961728", "order_id": "K3", "amount": 100, "actual_amount": 15.625, "token": "T", "block_transaction_id": "1", "status": 2}},
        {"flavor": "bepusdt", "body": {"trade_id": "t", "order_id": "K4", "amount": 1234567.5, "actual_amount": "4.25", "token": "T", "block_transaction_id": "", "status": 1}},
    ]);
    let tp_pairs = [
        ("ActualAmount", "28.80"),
        ("Currency", "USDT_TRC20"),
        ("NotifyUrl", "https://s/n"),
        ("OrderUserKey", "K5"),
        ("OutOrderId", "K5"),
        ("RedirectUrl", "https://s/r"),
    ];
    let mut tp_body: Map<String, Value> = tp_pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    tp_body.insert("Signature".into(), json!(tp_signature(&tp_pairs, "666")));
    let input = json!({
        "token": token,
        "kami_signed": kami_signed,
        "to_sign": to_sign,
        "tokenpay": {"secret": "666", "kami_signed": [Value::Object(tp_body)],
                     "to_sign": [{"ActualAmount": "15", "Amount": "34.91", "Id": "x", "OutOrderId": "K6", "Status": 1, "PassThroughInfo": ""}]},
    });
    let dir = std::env::temp_dir().join(format!("kami-epusdt-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (inp, out) = (dir.join("in.json"), dir.join("out.json"));
    std::fs::write(&inp, serde_json::to_vec(&input).unwrap()).unwrap();
    let root = support::workspace_root();
    let run = tokio::process::Command::new("python3")
        .arg(root.join("interop/epusdt/check.py"))
        .arg(&inp)
        .arg(&out)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .unwrap();
    println!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "interop/epusdt/check.py failed");
    let output: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // kami → Python.
    assert_eq!(output["verified"], json!([true, true, true, true]));
    assert_eq!(output["tokenpay_verified"], json!([true]));
    // Python → kami.
    for b in output["signed"].as_array().unwrap() {
        assert!(
            kami_pay::epusdt::verify(b.as_object().unwrap(), token),
            "{b}"
        );
        let mut tampered = b.as_object().unwrap().clone();
        tampered.insert("order_id".into(), json!("K9"));
        assert!(!kami_pay::epusdt::verify(&tampered, token));
    }
    for b in output["tokenpay_signed"].as_array().unwrap() {
        let m = b.as_object().unwrap();
        assert!(tp_verify(m, "666"), "{b}");
        assert!(json_pairs(m).is_some());
    }
}
