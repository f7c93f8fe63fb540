"""WeChat Pay API v3 cross-check of kami against the PyPI SDK wechatpayv3==2.0.4 (MIT) and
`cryptography` (protocols.md B and D).

Driven by `cargo test -p kami-sim --test wechatpay interop` which writes DIR/kami.json and reads
DIR/sdk.json back. Usage: check.py DIR

  (1) a kami-built notification (headers + body) is accepted by
      WeChatPay(..., public_key=PEM, public_key_id='PUB_KEY_ID_...').callback(headers, body),
      and its WECHATPAY/SIGNTEST/ variant is rejected;
  (2) notifications built with the SDK-side helpers (utils.rsa_sign, AESGCM) in public-key
      mode and in platform-certificate mode (self-signed cert made here) go to sdk.json for
      kami's channel to verify and decrypt;
  (3) kami's Authorization header (captured on the wire) verifies with `cryptography` per the
      five-line rule of B.1;
  (4) the SDK as a merchant client of kami's simulator (its API mounted at the root):
      the simulator accepts the SDK's signatures and the SDK accepts the simulator's.

Keys are generated at run time; nothing here is a real credential.
"""

import base64
import datetime
import json
import re
import secrets
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import rsa_sign

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)
    return cond


def pem_text(s):
    """kami writes PEM with CRLF line ends; the SDK's PEM helpers expect LF."""
    return s.replace("\r\n", "\n").strip()


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def private_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def sdk_notification(key, serial, apiv3_key, plaintext):
    """A TRANSACTION.SUCCESS notification as WeChat sends it, built with SDK-side helpers."""
    nonce = secrets.token_urlsafe(9)[:12]
    ct = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), b"transaction")
    body = json.dumps(
        {
            "id": "EV-" + secrets.token_hex(8),
            "create_time": datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8)))
            .replace(microsecond=0)
            .isoformat(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ct).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    ts = str(int(time.time()))
    n = secrets.token_hex(16)
    sig = rsa_sign(key, "%s\n%s\n%s\n" % (ts, n, body))
    headers = {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": n,
        "Wechatpay-Signature": sig,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return {"headers": headers, "body": body}


def parse_authorization(value):
    scheme, _, params = value.partition(" ")
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', params))
    return scheme, pairs


def main():
    d = Path(sys.argv[1])
    k = json.loads((d / "kami.json").read_text(encoding="utf-8"))
    out = {}

    # (1) kami-built notification accepted by the SDK; SIGNTEST variant rejected.
    wx = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=k["mchid"],
        private_key=pem_text(k["merchant_private_key"]),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        notify_url="https://shop.example/pay/notify/wx",
        public_key=pem_text(k["platform_public_key"]),
        public_key_id=k["platform_key_id"],
    )
    n = k["notify"]
    result = wx.callback(n["headers"], n["body"])
    ok = bool(result) and result.get("event_type") == "TRANSACTION.SUCCESS"
    res = (result or {}).get("resource", {})
    ok = ok and res.get("out_trade_no") == k["out_trade_no"] and res.get("mchid") == k["mchid"]
    check(ok, "(1) SDK callback accepts kami's notification and decrypts it")
    out["callback_ok"] = ok
    out["callback_resource"] = res
    probe = k["notify_signtest"]
    check(probe["headers"]["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/"), "(1) probe variant is a probe")
    rejected = wx.callback(probe["headers"], probe["body"]) is None
    check(rejected, "(1) SDK callback rejects kami's SIGNTEST probe")
    out["signtest_rejected"] = rejected
    tampered = dict(n["headers"])
    tampered["Wechatpay-Timestamp"] = str(int(tampered["Wechatpay-Timestamp"]) + 1)
    check(wx.callback(tampered, n["body"]) is None, "(1) SDK callback rejects a tampered timestamp")

    # (2) SDK-built notifications for kami to verify: public-key mode and cert mode.
    expected = {
        "out_trade_no": "K2024010112" + "".join(secrets.choice("0123456789") for _ in range(16)),
        "transaction_id": "4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
        "total": 4321,
    }
    plaintext = json.dumps(
        {
            "mchid": k["mchid"],
            "appid": k["appid"],
            "out_trade_no": expected["out_trade_no"],
            "transaction_id": expected["transaction_id"],
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": "2024-01-01T12:00:09+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": expected["total"], "payer_total": expected["total"], "currency": "CNY", "payer_currency": "CNY"},
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    pk = new_key()
    key_id = "PUB_KEY_ID_01" + "".join(secrets.choice("0123456789") for _ in range(32))
    pub_notify = sdk_notification(pk, key_id, k["apiv3_key"], plaintext)
    sdk_self = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=k["mchid"],
        private_key=pem_text(k["merchant_private_key"]),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        public_key=public_pem(pk),
        public_key_id=key_id,
    )
    check(sdk_self.callback(pub_notify["headers"], pub_notify["body"]) is not None, "(2) SDK accepts its own public-key-mode notification")
    out["pubkey"] = {"key_id": key_id, "public_key": public_pem(pk), "notify": pub_notify}

    ck = new_key()
    serial = secrets.randbits(64) | (1 << 63)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (kami interop test)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ck.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(ck, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    serial_hex = format(serial, "X")
    cert_dir = d / "certs"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / (serial_hex + ".pem")).write_text(cert_pem)
    cert_notify = sdk_notification(ck, serial_hex, k["apiv3_key"], plaintext)
    sdk_cert = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=k["mchid"],
        private_key=pem_text(k["merchant_private_key"]),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        cert_dir=str(cert_dir),
    )
    check(sdk_cert.callback(cert_notify["headers"], cert_notify["body"]) is not None, "(2) SDK accepts its own cert-mode notification")
    out["cert"] = {"serial": serial_hex, "certificate": cert_pem, "notify": cert_notify}
    out["expected"] = expected

    # (3) kami's Authorization header, verified with `cryptography` (five-line rule).
    r = k["request"]
    scheme, p = parse_authorization(r["authorization"])
    ok = check(scheme == "WECHATPAY2-SHA256-RSA2048", "(3) scheme WECHATPAY2-SHA256-RSA2048")
    ok &= check(sorted(p) == ["mchid", "nonce_str", "serial_no", "signature", "timestamp"], "(3) exactly the five parameters")
    ok &= check(p.get("mchid") == k["mchid"] and p.get("serial_no") == k["merchant_serial_no"], "(3) mchid and serial_no")
    ok &= check(abs(int(p.get("timestamp", "0")) - time.time()) < 300, "(3) fresh timestamp")
    message = "%s\n%s\n%s\n%s\n%s\n" % (r["method"], r["path"], p.get("timestamp"), p.get("nonce_str"), r["body"])
    merchant_pub = serialization.load_pem_public_key(pem_text(k["merchant_public_key"]).encode())
    try:
        merchant_pub.verify(base64.b64decode(p.get("signature", "")), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        verified = True
    except (InvalidSignature, ValueError):
        verified = False
    ok &= check(verified, "(3) signature verifies over METHOD\\nURL\\nTS\\nNONCE\\nBODY\\n")
    body = json.loads(r["body"])
    ok &= check(r["path"] == "/capture/v3/pay/transactions/native", "(3) Native path")
    ok &= check(body.get("appid") == k["appid"] and body.get("mchid") == k["mchid"], "(3) body appid/mchid")
    ok &= check(body.get("amount") == {"total": 1230, "currency": "CNY"}, "(3) amount in fen + CNY")
    ok &= check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", body.get("time_expire", "")) is not None, "(3) time_expire RFC 3339 +08:00")
    out["authorization_verified"] = bool(ok)

    # (4) The SDK as a client of kami's simulator.
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=k["mchid"],
        private_key=pem_text(k["merchant_private_key"]),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        notify_url="http://127.0.0.1:9/pay/notify/wx",
        public_key=pem_text(k["platform_public_key"]),
        public_key_id=k["platform_key_id"],
        timeout=(5, 10),
    )
    client._core._gate_way = k["sim_root"]  # the SDK hard-codes the production host
    sim = {}
    trade = "PY" + "".join(secrets.choice("0123456789") for _ in range(20))
    code, message = client.pay(description="interop 测试", out_trade_no=trade, amount={"total": 1, "currency": "CNY"})
    sim["code_url_ok"] = check(
        code == 200 and json.loads(message).get("code_url", "").startswith("weixin://wxpay/bizpayurl?pr="),
        "(4) SDK native order against the simulator (signatures both ways): %s %s" % (code, message),
    )
    code, message = client.query(out_trade_no=trade)
    sim["query_ok"] = check(code == 200 and json.loads(message).get("trade_state") == "NOTPAY", "(4) SDK query: %s" % code)
    code, message = client.close(out_trade_no=trade)
    sim["close_ok"] = check(code == 204, "(4) SDK close answered 204 (signed empty body): %s" % code)
    code, message = client.query(out_trade_no=trade)
    sim["closed_ok"] = check(code == 200 and json.loads(message).get("trade_state") == "CLOSED", "(4) SDK query after close")
    # A request signed by another key is refused with 401 SIGN_ERROR (unverified error path).
    other = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=k["mchid"],
        private_key=private_pem(new_key()),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        public_key=pem_text(k["platform_public_key"]),
        public_key_id=k["platform_key_id"],
        timeout=(5, 10),
    )
    other._core._gate_way = k["sim_root"]
    code, message = other.query(out_trade_no=trade)
    sim["sign_error_ok"] = check(code == 401 and json.loads(message).get("code") == "SIGN_ERROR", "(4) foreign key gets 401 SIGN_ERROR")
    out["sim_client"] = sim

    (d / "sdk.json").write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    total = 0
    print("wechatpay interop: %d failed" % len(FAILURES))
    return 1 if FAILURES else total


if __name__ == "__main__":
    sys.exit(main())
