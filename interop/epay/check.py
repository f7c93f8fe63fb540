"""Cross-check kami's Epay implementation against independent implementations.

Usage: check.py INPUT.json OUTPUT.json   (driven by `cargo test -p kami-sim --test epay interop`)

INPUT (written by kami): the merchant key and pid, kami-signed v1 requests (submit.php URLs,
mapi.php forms, arbitrary vectors), notifications signed by kami's simulator, and for v2 the
merchant public key, the platform private key, a kami-signed v2 request and notification.

Checks here (kami -> packages): every kami v1 signature verifies with
  * epay-sdk 0.4.1   EPayClient.verify_sign, EPayClient.verify_callback (notifications)
  * epusdt 0.4.0     epusdt.signature.verify_epay_signature
  * reference.py     (spec-derived)
and every single-field tampering is rejected by all three; kami's v2 RSA signatures verify with
`cryptography` over reference.canonical, and tampering is rejected.

OUTPUT (packages -> kami): notifications signed by epay-sdk (EPayClient.sign), epusdt
(generate_epay_signature) and reference.py, URL-encoded by urllib; a submit.php URL built by
epay-sdk's create_order_url; tampered copies; a v2 notification signed with `cryptography`.
kami then verifies these with its channel and simulator code.

Exits 1 (printing every failure) if any check fails.
"""

import json
import sys
import urllib.parse
import warnings

import reference
from epay_sdk import EPayClient, EPayConfig
from epay_sdk.models import CreateOrderRequest
from epusdt.signature import generate_epay_signature, verify_epay_signature

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)


def pairs_from_url(url):
    query = urllib.parse.urlsplit(url).query
    return urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)


def tampered(params):
    """One copy per signed field with that field's value changed."""
    for i, (k, v) in enumerate(params):
        if k in ("sign", "sign_type") or v == "":
            continue
        copy = list(params)
        copy[i] = (k, v + "1")
        yield k, copy


def main():
    inp = json.load(open(sys.argv[1], encoding="utf-8"))
    key, pid = inp["key"], inp["pid"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = EPayClient(EPayConfig(pid=pid, key=key, base_url=inp["gateway"], environment="sandbox"))

    # --- kami -> packages, v1 -------------------------------------------------------------
    v1_sets = [("submit " + u, pairs_from_url(u)) for u in inp["v1"]["submit_urls"]]
    v1_sets += [("mapi form", [tuple(p) for p in f]) for f in inp["v1"]["mapi_forms"]]
    v1_sets += [("vector", [tuple(p) for p in f]) for f in inp["v1"]["vectors"]]
    v1_sets += [("notification", [tuple(p) for p in f]) for f in inp["v1"]["notifications"]]
    for label, params in v1_sets:
        d = dict(params)
        check(len(d) == len(params), f"{label}: duplicate keys")
        check(client.verify_sign(d), f"epay-sdk verify_sign rejects kami {label}: {params}")
        check(verify_epay_signature(d, key), f"epusdt rejects kami {label}: {params}")
        check(reference.md5_verify(params, key), f"reference rejects kami {label}: {params}")
        for field, bad in tampered(params):
            bd = dict(bad)
            check(not client.verify_sign(bd), f"epay-sdk accepts {label} with tampered {field}")
            check(not verify_epay_signature(bd, key), f"epusdt accepts {label} with tampered {field}")
            check(not reference.md5_verify(bad, key), f"reference accepts {label} with tampered {field}")
        check(not verify_epay_signature(d, key + "x"), f"epusdt accepts {label} under another key")
    for params in inp["v1"]["notifications"]:
        d = dict(tuple(p) for p in params)
        try:
            r = client.verify_callback(d)
            check(r.trade_status == "TRADE_SUCCESS" and r.out_trade_no == d["out_trade_no"]
                  and r.money == d["money"] and r.pid == pid,
                  f"epay-sdk verify_callback read kami's notification differently: {r}")
        except Exception as e:  # noqa: BLE001 - any refusal is a failure here
            check(False, f"epay-sdk verify_callback refuses kami's notification: {e!r}")

    # --- kami -> cryptography, v2 ---------------------------------------------------------
    from cryptography.hazmat.primitives import serialization

    merchant_pub = serialization.load_pem_public_key(inp["v2"]["merchant_public_pem"].encode())
    platform_priv = serialization.load_pem_private_key(inp["v2"]["platform_private_pem"].encode(), None)
    platform_pub = platform_priv.public_key()
    v2_sets = [("v2 request " + u, pairs_from_url(u)) for u in inp["v2"]["submit_urls"]]
    v2_sets += [("v2 notification", [tuple(p) for p in inp["v2"]["notification"]])]
    for label, params in v2_sets:
        pub = platform_pub if "notification" in label else merchant_pub
        check(dict(params).get("sign_type") == "RSA", f"{label}: sign_type is not RSA")
        check("timestamp" in dict(params), f"{label}: no timestamp")
        check(reference.rsa_verify(params, pub), f"cryptography rejects kami {label}: {params}")
        for field, bad in tampered(params):
            check(not reference.rsa_verify(bad, pub), f"cryptography accepts {label} with tampered {field}")

    # --- packages -> kami -----------------------------------------------------------------
    base = [tuple(p) for p in inp["notify_template"]]
    out = {"notifications": [], "tampered": [], "requests": [], "v2_notifications": []}

    def emit(by, params):
        out["notifications"].append({"by": by, "query": urllib.parse.urlencode(params)})
        money_i = next(i for i, (k, _) in enumerate(params) if k == "money")
        bad = list(params)
        bad[money_i] = ("money", "0.01")
        out["tampered"].append({"by": by, "query": urllib.parse.urlencode(bad)})

    d = dict(base)
    emit("epay-sdk EPayClient.sign", base + [("sign", client.sign(d)), ("sign_type", "MD5")])
    emit("epusdt generate_epay_signature", base + [("sign", generate_epay_signature(d, key)), ("sign_type", "MD5")])
    emit("reference.md5_sign", base + [("sign", reference.md5_sign(base, key)), ("sign_type", "MD5")])
    # epay-sdk's own verify_callback agrees with what it signed (sanity of the harness).
    client.verify_callback(dict(base + [("sign", client.sign(d)), ("sign_type", "MD5")]))

    req = inp["request_template"]
    url = client.create_order_url(CreateOrderRequest(
        out_trade_no=req["out_trade_no"], name=req["name"], money=req["money"],
        notify_url=req["notify_url"], return_url=req["return_url"], pay_type=req["type"],
        clientip=req["clientip"], device=req["device"]))
    out["requests"].append({"by": "epay-sdk create_order_url", "url": url})

    v2 = [tuple(p) for p in inp["v2"]["notify_template"]]
    v2_signed = v2 + [("sign", reference.rsa_sign(v2, platform_priv)), ("sign_type", "RSA")]
    out["v2_notifications"].append({"by": "cryptography + reference.canonical",
                                    "query": urllib.parse.urlencode(v2_signed)})

    json.dump(out, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False, indent=1)
    if failures:
        print(f"{len(failures)} of {checks} interop checks FAILED:")
        for f in failures:
            print("  -", f)
        sys.exit(1)
    print(f"epay interop (python side): {checks} checks passed")


if __name__ == "__main__":
    main()
