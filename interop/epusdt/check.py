"""epusdt / BEpusdt / TokenPay signatures, independently of kami: Python's hashlib and the
gateways' rules as their sources write them (epusdt sign.go: FormatFloat(v,'f',-1,64) of
every number, sorted k=v strings, token appended; BEpusdt utils.go: fmt %v; TokenPay: sorted
keys, empty values skipped, secret appended). Driven by `cargo test -p kami-sim --test epusdt
interop` (`bash interop/setup-epusdt.sh` first).

argv: input.json output.json. Input: {"token", "kami_signed": [{"flavor", "body"}...],
"to_sign": [{"flavor", "body"}...], "tokenpay": {"secret", "kami_signed": [body...],
"to_sign": [body...]}}. Output: {"verified": [bool...], "signed": [body...],
"tokenpay_verified": [bool...], "tokenpay_signed": [body...]}. Exits 1 when a document vector
does not reproduce.
"""
import hashlib
import json
import sys


def go_f(v):
    # Shortest round-trip decimal, never an exponent (Go 'f', -1).
    r = repr(float(v))
    if "e" in r or "E" in r:
        m, e = r.lower().split("e")
        e = int(e)
        digits = m.replace(".", "").replace("-", "")
        point = (m.index(".") if "." in m else len(m)) + e
        if point <= 0:
            r = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            r = digits + "0" * (point - len(digits))
        else:
            r = digits[:point] + "." + digits[point:]
    if r.endswith(".0"):
        r = r[:-2]
    return r


def go_v(v):
    # %v of a float64: %g with the shortest precision, exponent when exp < -4 or >= 6.
    f = float(v)
    if f == 0:
        return "0"
    # Shortest digits: from repr.
    r = repr(f)
    if "e" in r:
        m, e = r.split("e")
        exp = int(e)
        mant = m
    else:
        neg = r.startswith("-")
        body = r.lstrip("-")
        intpart, _, frac = body.partition(".")
        frac = frac.rstrip("0")
        all_digits = (intpart + frac).lstrip("0")
        if intpart.strip("0"):
            exp = len(intpart.lstrip("0")) - 1
        else:
            exp = -(len(frac) - len(frac.lstrip("0")) + 1)
        d = all_digits.rstrip("0") or "0"
        mant = ("-" if neg else "") + d[0] + ("." + d[1:] if len(d) > 1 else "")
    if -4 <= exp < 6:
        return go_f(f)
    if mant.endswith(".0"):
        mant = mant[:-2]
    return "%se%s%02d" % (mant, "-" if exp < 0 else "+", abs(exp))


def render(v, flavor):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return go_f(v) if flavor == "epusdt" else go_v(v)
    if v == "" and flavor == "bepusdt":
        return None
    return str(v)


def epusdt_sign(body, token, flavor):
    parts = []
    for k, v in body.items():
        if k == "signature":
            continue
        t = render(v, flavor)
        if t is not None:
            parts.append("%s=%s" % (k, t))
    parts.sort()
    return hashlib.md5(("&".join(parts) + token).encode()).hexdigest()


def tokenpay_sign(body, secret):
    pairs = []
    for k in sorted(body):
        v = body[k]
        if k == "Signature" or v is None or v == "":
            continue
        pairs.append("%s=%s" % (k, v))
    return hashlib.md5(("&".join(pairs) + secret).encode()).hexdigest()


def main():
    doc = "epusdt_password_xasddawqe"
    ok = epusdt_sign({"order_id": "20220201030210321", "amount": 42,
                      "notify_url": "http://example.com/notify",
                      "redirect_url": "http://example.com/redirect"}, doc, "epusdt")
    bep = epusdt_sign({"trade_id": "b3d2477c-d945-41da-96b7-f925bbd1b415", "order_id": "20250120001",
                       "amount": 28.88, "actual_amount": "4.25",
                       "token": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
                       "block_transaction_id": "12ef6267b42e43959795cf31808d0cc72b3d0a48953ed19c61d4b6665a341d10",
                       "status": 2}, doc, "bepusdt")
    if ok != "1cd4b52df5587cfb1968b0c0c6e156cd" or bep != "3e5e6594fb8a65f6fd58f70c394bca3a":
        print("document vectors do not reproduce:", ok, bep)
        return 1
    if go_v(1e6) != "1e+06" or go_v(28.8) != "28.8" or go_f(28.80) != "28.8":
        print("number formats:", go_v(1e6), go_v(28.8), go_f(28.80))
        return 1
    with open(sys.argv[1]) as f:
        inp = json.load(f)
    token = inp["token"]
    out = {
        "verified": [epusdt_sign(x["body"], token, x["flavor"]) == x["body"].get("signature")
                     for x in inp["kami_signed"]],
        "signed": [],
        "tokenpay_verified": [tokenpay_sign(b, inp["tokenpay"]["secret"]) == b.get("Signature")
                              for b in inp["tokenpay"]["kami_signed"]],
        "tokenpay_signed": [],
    }
    for x in inp["to_sign"]:
        b = dict(x["body"])
        b["signature"] = epusdt_sign(b, token, x["flavor"])
        out["signed"].append(b)
    for b in inp["tokenpay"]["to_sign"]:
        b = dict(b)
        b["Signature"] = tokenpay_sign(b, inp["tokenpay"]["secret"])
        out["tokenpay_signed"].append(b)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    print("epusdt interop: %d verified, %d signed" % (len(out["verified"]), len(out["signed"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
