"""Spec-derived reference of the Epay signing rules (shared/protocols.md G.4 and G.5).

Written from the specification text only, independently of kami's Rust code. It is the
*fallback* cross-check: the PyPI packages used by check.py (epay-sdk, epusdt) cover v1 MD5,
but no package implements v2 (RSA), so v2 is checked against this file plus `cryptography`.
"""

import base64
import hashlib

EXCLUDED = ("sign", "sign_type")


def canonical(params):
    """G.4 steps 1-4: drop sign/sign_type and empty values, sort keys by byte value,
    join raw values as k=v with '&'."""
    items = [(k, v) for k, v in params if k not in EXCLUDED and v != ""]
    items.sort(key=lambda kv: (kv[0].encode("utf-8"), kv[1].encode("utf-8")))
    return "&".join(f"{k}={v}" for k, v in items)


def md5_sign(params, key):
    """G.4 steps 5-6: lower-case hex MD5 of canonical + key (appended directly)."""
    return hashlib.md5((canonical(params) + key).encode("utf-8")).hexdigest()


def md5_verify(params, key):
    signs = [v for k, v in params if k == "sign"]
    keys = [k for k, _ in params]
    if len(signs) != 1 or len(set(keys)) != len(keys):
        return False
    return signs[0].lower() == md5_sign(params, key)


def rsa_sign(params, private_key):
    """G.5: base64 SHA256withRSA (PKCS#1 v1.5) over the canonical string."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    sig = private_key.sign(canonical(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode("ascii")


def rsa_verify(params, public_key):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signs = [v for k, v in params if k == "sign"]
    if len(signs) != 1:
        return False
    try:
        sig = base64.b64decode(signs[0], validate=True)
        public_key.verify(sig, canonical(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False
