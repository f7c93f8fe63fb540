"""WeChat Pay JSAPI cross-check of kami against the PyPI SDK wechatpayv3==2.0.4 (MIT):
the `paySign` of `getBrandWCPayRequest` (protocols.md B.4, W5).

Driven by `cargo test -p kami-sim --test wechatpay interop_jsapi_pay_sign`, which writes
DIR/jsapi.json (a merchant key generated at run time, kami's bridge parameters) and reads
DIR/jsapi-sdk.json back. Usage: jsapi.py DIR

  (1) for each of kami's parameter sets, the SDK's JSAPI helper `WeChatPay.sign([appId,
      timeStamp, nonceStr, package])` gives the same paySign (PKCS#1 v1.5 is deterministic),
      and `cryptography` verifies it with the merchant's public key;
  (2) a parameter set signed by the SDK goes back to kami's simulator to verify.
"""

import base64
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from wechatpayv3 import WeChatPay, WeChatPayType

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)
    return cond


def pem_text(s):
    return s.replace("\r\n", "\n").strip()


def main():
    d = Path(sys.argv[1])
    k = json.loads((d / "jsapi.json").read_text(encoding="utf-8"))
    wx = WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid=k["mchid"],
        private_key=pem_text(k["merchant_private_key"]),
        cert_serial_no=k["merchant_serial_no"],
        appid=k["appid"],
        apiv3_key=k["apiv3_key"],
        notify_url="https://shop.example/pay/notify/wx",
        public_key=pem_text(k["platform_public_key"]),
        public_key_id=k["platform_key_id"],
    )
    pub = serialization.load_pem_public_key(pem_text(k["merchant_public_key"]).encode())
    for i, p in enumerate(k["cases"]):
        fields = [p["appId"], p["timeStamp"], p["nonceStr"], p["package"]]
        sdk = wx.sign(fields)
        check(sdk == p["paySign"], f"(1.{i}) SDK sign() equals kami's paySign")
        msg = ("\n".join(fields) + "\n").encode()
        try:
            pub.verify(base64.b64decode(p["paySign"]), msg, padding.PKCS1v15(), hashes.SHA256())
            ok = True
        except InvalidSignature:
            ok = False
        check(ok, f"(1.{i}) cryptography verifies kami's paySign")
        check(p["signType"] == "RSA", f"(1.{i}) signType RSA")
    sdk_case = dict(k["cases"][0])
    sdk_case["nonceStr"] = "SDKNONCE0123456789"
    sdk_case["paySign"] = wx.sign(
        [sdk_case["appId"], sdk_case["timeStamp"], sdk_case["nonceStr"], sdk_case["package"]]
    )
    (d / "jsapi-sdk.json").write_text(json.dumps({"sdk_case": sdk_case}), encoding="utf-8")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("all JSAPI checks passed")


if __name__ == "__main__":
    main()
