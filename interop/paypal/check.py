"""Cross-check kami's PayPal webhook verification against a Python reference.

Usage: check.py INPUT.json OUTPUT.json   (driven by `cargo test -p kami-sim --test paypal interop`)

INPUT (written by kami): `cases`, each {transmission_id, transmission_time, webhook_id,
body_b64, message} with the message kami builds; `signed`, deliveries kami's simulator signed
({headers, body_b64}) with its certificate (`cert_pem`) and the webhook id.

Checks here (kami -> Python): every kami message equals
`transmission_id|transmission_time|webhook_id|zlib.crc32(body)` (unsigned decimal, as
paypalrestsdk's WebhookEvent._get_expected_sig builds it), and every kami-signed delivery
verifies with `cryptography` (PKCS#1 v1.5, SHA-256) against the simulator's certificate.

OUTPUT (Python -> kami): a CA and a signing certificate (CN messageverificationcerts.paypal.com)
generated here, the messages Python builds for kami's cases, and deliveries Python signed over
those messages plus tampered copies, which kami must accept and refuse respectively.

Exits 1 (printing every failure) if any check fails.
"""

import base64
import datetime
import json
import sys
import uuid
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)


def message(tid, ttime, webhook_id, body):
    # paypalrestsdk: "{0}|{1}|{2}|{3}".format(transmission_id, timestamp, webhook_id,
    # binascii.crc32(event_body) & 0xffffffff)
    return "{0}|{1}|{2}|{3}".format(tid, ttime, webhook_id, zlib.crc32(body) & 0xFFFFFFFF)


def pki():
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "interop test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()
    return pem(ca), pem(leaf), key


def main():
    inp = json.load(open(sys.argv[1]))
    out = {"messages": [], "deliveries": []}

    # kami -> Python: the message string, byte for byte.
    for c in inp["cases"]:
        body = base64.b64decode(c["body_b64"])
        m = message(c["transmission_id"], c["transmission_time"], c["webhook_id"], body)
        out["messages"].append(m)
        check(m == c["message"], "message differs: kami %r python %r" % (c["message"], m))

    # kami's simulator signatures verify with cryptography against its certificate.
    sim_cert = x509.load_pem_x509_certificate(inp["cert_pem"].encode())
    for d in inp["signed"]:
        h = {k.lower(): v for k, v in d["headers"]}
        body = base64.b64decode(d["body_b64"])
        m = message(h["paypal-transmission-id"], h["paypal-transmission-time"], inp["webhook_id"], body)
        sig = base64.b64decode(h["paypal-transmission-sig"])
        try:
            sim_cert.public_key().verify(sig, m.encode(), padding.PKCS1v15(), hashes.SHA256())
            ok = True
        except Exception:
            ok = False
        check(ok, "kami simulator signature does not verify: %r" % m)
        check(h["paypal-auth-algo"] == "SHA256withRSA", "auth algo")

    # Python -> kami: deliveries signed here, genuine and tampered.
    ca_pem, cert_pem, key = pki()
    out["ca_pem"] = ca_pem
    out["cert_pem"] = cert_pem
    ttime = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for body_text in inp["bodies"]:
        body = body_text.encode()
        tid = str(uuid.uuid4())
        m = message(tid, ttime, inp["webhook_id"], body)
        sig = base64.b64encode(key.sign(m.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
        headers = [
            ["PAYPAL-TRANSMISSION-ID", tid],
            ["PAYPAL-TRANSMISSION-TIME", ttime],
            ["PAYPAL-TRANSMISSION-SIG", sig],
            ["PAYPAL-CERT-URL", inp["cert_url"]],
            ["PAYPAL-AUTH-ALGO", "SHA256withRSA"],
        ]
        out["deliveries"].append({"headers": headers, "body": body_text, "genuine": True, "what": "genuine"})
        tampered_body = body_text.replace("12.30", "0.01")
        out["deliveries"].append({"headers": headers, "body": tampered_body, "genuine": False, "what": "amount"})
        other = message(tid, ttime, "WH-SOMEONE-ELSE", body)
        other_sig = base64.b64encode(key.sign(other.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
        h2 = [list(x) for x in headers]
        h2[2][1] = other_sig
        out["deliveries"].append({"headers": h2, "body": body_text, "genuine": False, "what": "webhook_id"})
        h3 = [list(x) for x in headers]
        h3[1][1] = "2001-01-01T00:00:00Z"
        out["deliveries"].append({"headers": h3, "body": body_text, "genuine": False, "what": "transmission_time"})

    json.dump(out, open(sys.argv[2], "w"))
    print("paypal interop: %d checks, %d failures" % (checks, len(failures)))
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
