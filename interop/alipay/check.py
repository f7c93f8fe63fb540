#!/usr/bin/env python3
"""Cross-check kami's Alipay bytes against two independent SDKs (protocols.md D).

    python3 interop/alipay/check.py DIR

DIR holds `kami.json`, written by the Rust test `sdk_interop` in
crates/kami-sim/tests/alipay.rs. This script runs itself once inside each SDK's venv
(the two SDKs both ship a top-level `alipay` package, so they cannot share one):

  target/interop-venv/alipay-official  alipay-sdk-python 3.7.1411 (official)
  target/interop-venv/alipay-fzlee     python-alipay-sdk 3.4.0 (fzlee)

(made by interop/setup-alipay.sh; override the folder with KAMI_INTEROP_VENV_DIR), and
writes `sdk.json` for the Rust side to read back:

  request_checks   kami-signed requests: verified by the SDK (official `verify_with_rsa`,
                   fzlee `_verify`) and re-signed by the SDK to the very same signature
  response_checks  simulator responses verified by fzlee `_verify_and_return_sync_response`
                   and the official `DefaultAlipayClient.__parse_response`
  notify_checks    simulator notifications verified by fzlee `AliPay.verify`
  signed_notifies  notifications signed gateway-side by the official `sign_with_rsa2` /
                   `sign_with_rsa` (plus a tampered copy) for kami to verify
  sdk_requests     requests signed by fzlee `client_api` and the official helpers, for the
                   kami simulator to verify

kami.json (all strings; params are [key, value] lists):
  app_id, merchant_private_key_pem, merchant_public_key_b64, gateway_private_key_pem,
  gateway_public_key_b64, timestamp (Beijing time for SDK-signed requests), notify_url,
  requests: [{name, sign_type, params}], responses: [{name, sign_type, node_name, node,
  body, expect_success}], notifications: [{name, sign_type, body}],
  notify_templates: [{name, sign_type, params}]

Exit status 0 iff every check the SDKs can judge passed; the Rust test checks the rest.
"""

import json
import os
import subprocess
import sys
import traceback
from urllib.parse import parse_qsl, unquote_plus, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def venv_python(name):
    base = os.environ.get("KAMI_INTEROP_VENV_DIR") or os.path.join(REPO, "target", "interop-venv")
    return os.path.join(base, name, "bin", "python")


def load(dir_):
    with open(os.path.join(dir_, "kami.json"), encoding="utf-8") as f:
        return json.load(f)


def pkcs1_b64(pem_text):
    """Bare base64 PKCS#1 DER of a PEM private key (the official SDK's key form)."""
    from cryptography.hazmat.primitives import serialization
    import base64

    key = serialization.load_pem_private_key(pem_text.encode(), password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


def pkcs1_pem(pem_text):
    b64 = pkcs1_b64(pem_text)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----\n"


def public_pem(b64):
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def safe(fn):
    try:
        return fn()
    except Exception as e:  # the SDKs raise on failed verification
        return "error: %s: %s" % (type(e).__name__, str(e)[:200])


# ---- official SDK (alipay-sdk-python) -----------------------------------------------------

def role_official(kami):
    from alipay.aop.api.util.SignatureUtils import (
        get_sign_content, sign_with_rsa, sign_with_rsa2, verify_with_rsa)
    from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
    from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
    from alipay.aop.api.constant.CommonConstants import THREAD_LOCAL

    merchant_priv = pkcs1_b64(kami["merchant_private_key_pem"])
    gateway_priv = pkcs1_b64(kami["gateway_private_key_pem"])
    sign = {"RSA2": sign_with_rsa2, "RSA": sign_with_rsa}
    out = {"request_checks": [], "response_checks": [], "signed_notifies": [], "sdk_requests": []}

    # (1) kami-signed requests: the request rule keeps sign_type, drops only sign.
    for r in kami["requests"]:
        params = dict(r["params"])
        sig = params.pop("sign")
        content = get_sign_content(params)
        out["request_checks"].append({
            "name": r["name"],
            "sdk": "official",
            "verified": safe(lambda: verify_with_rsa(
                kami["merchant_public_key_b64"], content.encode("utf-8"), sig)) is True,
            "same_signature": sign[r["sign_type"]](merchant_priv, content, "utf-8") == sig,
            "tampered_rejected": safe(lambda: verify_with_rsa(
                kami["merchant_public_key_b64"], (content + "x").encode("utf-8"), sig)) is not True,
        })

    # (2) notifications signed gateway-side by the official helper (sign, sign_type unsigned).
    for t in kami["notify_templates"]:
        params = dict(t["params"])
        content = get_sign_content({k: v for k, v in params.items() if v != ""})
        params["sign_type"] = t["sign_type"]
        params["sign"] = sign[t["sign_type"]](gateway_priv, content, "utf-8")
        tampered = dict(params)
        tampered["total_amount"] = "0.01"
        out["signed_notifies"].append({
            "name": t["name"],
            "body": urlencode(params),
            "tampered_body": urlencode(tampered),
        })

    # (3b) responses through the official client's parser (verifies the raw node).
    THREAD_LOCAL.logger = None
    THREAD_LOCAL.uuid = "kami-interop"
    for r in kami["responses"]:
        cfg = AlipayClientConfig()
        cfg.app_id = kami["app_id"]
        cfg.sign_type = r["sign_type"]
        cfg.app_private_key = merchant_priv
        cfg.alipay_public_key = kami["gateway_public_key_b64"]
        client = DefaultAlipayClient(cfg)
        parsed = safe(lambda: client._DefaultAlipayClient__parse_response(r["body"].encode("utf-8")))
        ok = not (isinstance(parsed, str) and parsed.startswith("error:"))
        same = ok and json.loads(parsed) == json.loads(r["node"])
        forged = r["body"].replace('"sign":"', '"sign":"A', 1)
        bad = safe(lambda: client._DefaultAlipayClient__parse_response(forged.encode("utf-8")))
        out["response_checks"].append({
            "name": r["name"],
            "sdk": "official",
            "verified": bool(same),
            "forged_rejected": isinstance(bad, str) and bad.startswith("error:"),
            "detail": parsed if not ok else "",
        })

    # An official-style request (common params + biz_content, signed with the helpers).
    for st in ("RSA2", "RSA"):
        biz = {"out_trade_no": "OFFICIAL%s%s" % (st, kami["timestamp"][-2:]),
               "total_amount": "0.01", "subject": "官方 SDK & interop = ok"}
        params = {
            "app_id": kami["app_id"], "method": "alipay.trade.precreate", "charset": "utf-8",
            "format": "JSON", "sign_type": st, "timestamp": kami["timestamp"], "version": "1.0",
            "notify_url": kami["notify_url"],
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = sign[st](merchant_priv, get_sign_content(params), "utf-8")
        out["sdk_requests"].append({"name": "official-%s" % st, "query": urlencode(params)})
    return out


# ---- fzlee SDK (python-alipay-sdk) ---------------------------------------------------------

def role_fzlee(kami):
    from alipay import AliPay

    merchant_priv = pkcs1_pem(kami["merchant_private_key_pem"])
    merchant_pub = public_pem(kami["merchant_public_key_b64"])
    gateway_pub = public_pem(kami["gateway_public_key_b64"])
    out = {"request_checks": [], "response_checks": [], "notify_checks": [], "sdk_requests": []}

    def client(st, alipay_pub):
        return AliPay(appid=kami["app_id"], app_notify_url=None,
                      app_private_key_string=merchant_priv,
                      alipay_public_key_string=alipay_pub, sign_type=st)

    # (1) kami-signed requests: fzlee signs requests with the same rule (sign_type included).
    for r in kami["requests"]:
        params = dict(r["params"])
        sig = params.pop("sign")
        gw = client(r["sign_type"], merchant_pub)  # verify with the MERCHANT key, gateway-side
        message = "&".join("%s=%s" % (k, v) for k, v in sorted(params.items()))
        signed = gw.sign_data(dict(params))
        fz_sig = unquote_plus(signed.rsplit("&sign=", 1)[1])
        out["request_checks"].append({
            "name": r["name"],
            "sdk": "fzlee",
            "verified": safe(lambda: gw._verify(message, sig)) is True,
            "same_signature": fz_sig == sig,
            "tampered_rejected": safe(lambda: gw._verify(message + "x", sig)) is not True,
        })

    # (3) simulator responses through fzlee's sync-response verification.
    for r in kami["responses"]:
        ali = client(r["sign_type"], gateway_pub)
        res = safe(lambda: ali._verify_and_return_sync_response(r["body"], r["node_name"]))
        if r["node_name"] == "error_response":
            # fzlee raises AliPayException for error_response bodies without verifying them.
            ok = isinstance(res, str) and "AliPayException" in res
        else:
            # Success or business error under the method's node: verified, node returned.
            ok = isinstance(res, dict) and res == json.loads(r["node"])
        forged = r["body"].replace('"sign":"', '"sign":"A', 1)
        bad = safe(lambda: ali._verify_and_return_sync_response(forged, r["node_name"]))
        out["response_checks"].append({
            "name": r["name"],
            "sdk": "fzlee",
            "verified": bool(ok),
            "forged_rejected": isinstance(bad, str) and bad.startswith("error:"),
            "detail": res if isinstance(res, str) else "",
        })

    # Simulator notifications verified merchant-side (fzlee pops sign_type: notify rule).
    for n in kami["notifications"]:
        data = dict(parse_qsl(n["body"], keep_blank_values=True))
        sig = data.pop("sign")
        ali = client(n["sign_type"], gateway_pub)
        tampered = dict(data)
        tampered["total_amount"] = "0.01"
        out["notify_checks"].append({
            "name": n["name"],
            "sdk": "fzlee",
            "verified": safe(lambda: ali.verify(dict(data), sig)) is True,
            "tampered_rejected": safe(lambda: ali.verify(tampered, sig)) is not True,
        })

    # A request signed by fzlee's client_api, for the kami simulator to verify.
    for st in ("RSA2", "RSA"):
        ali = client(st, gateway_pub)
        query = ali.client_api(
            "alipay.trade.precreate",
            biz_content={"out_trade_no": "FZLEE%s%s" % (st, kami["timestamp"][-2:]),
                         "total_amount": "0.02", "subject": "fzlee 测试 + interop"},
            notify_url=kami["notify_url"], timestamp=kami["timestamp"])
        out["sdk_requests"].append({"name": "fzlee-%s" % st, "query": query})
    return out


# ---- orchestration --------------------------------------------------------------------------

def run_role(role, dir_):
    kami = load(dir_)
    result = {"official": role_official, "fzlee": role_fzlee}[role](kami)
    with open(os.path.join(dir_, "sdk-%s.json" % role), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)


def main(argv):
    if len(argv) == 3 and argv[0] == "--role":
        try:
            run_role(argv[1], argv[2])
        except Exception:
            traceback.print_exc()
            return 2
        return 0
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 64
    dir_ = argv[0]
    merged = {"request_checks": [], "response_checks": [], "notify_checks": [],
              "signed_notifies": [], "sdk_requests": []}
    for role, venv in (("official", "alipay-official"), ("fzlee", "alipay-fzlee")):
        py = venv_python(venv)
        if not os.access(py, os.X_OK):
            print("missing venv python %s (run interop/setup-alipay.sh)" % py, file=sys.stderr)
            return 3
        rc = subprocess.call([py, os.path.abspath(__file__), "--role", role, dir_])
        if rc != 0:
            print("%s role failed (exit %d)" % (role, rc), file=sys.stderr)
            return rc
        with open(os.path.join(dir_, "sdk-%s.json" % role), encoding="utf-8") as f:
            for k, v in json.load(f).items():
                merged[k].extend(v)
    with open(os.path.join(dir_, "sdk.json"), "w", encoding="utf-8") as f:
        json.dump(merged, f, ensure_ascii=False, indent=1)
    failed = []
    for kind in ("request_checks", "response_checks", "notify_checks"):
        for c in merged[kind]:
            for k, v in c.items():
                if isinstance(v, bool) and not v:
                    failed.append("%s %s/%s: %s %s" % (kind, c["sdk"], c["name"], k, c.get("detail", "")))
    checks = sum(1 for kind in ("request_checks", "response_checks", "notify_checks")
                 for c in merged[kind] for v in c.values() if isinstance(v, bool))
    for f in failed:
        print("FAILED " + f)
    print("alipay interop: %d SDK checks, %d failed; %d SDK-signed notifications and %d "
          "SDK-signed requests for kami" % (checks, len(failed), len(merged["signed_notifies"]),
                                            len(merged["sdk_requests"])))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
