#!/usr/bin/env bash
# Interop venv for the 易支付 (Epay) cross-checks (interop/epay/check.py, driven by
# `cargo test -p kami-sim --test epay interop`):
#   target/interop-venv/epay  epay-sdk==0.4.1  (PyPI, MIT: EPayClient.sign / verify_sign /
#                                               verify_callback / create_order_url)
#                             epusdt==0.4.0    (PyPI, MIT, Yufeifeio: its EPay-compatibility
#                                               generate_epay_signature / verify_epay_signature)
#                             cryptography     (v2 SHA256withRSA, against the spec-derived
#                                               reference in interop/epay/reference.py)
# Neither Epay package is widely used (no Epay SDK on PyPI or npm is); both are independent of
# kami and of each other. Idempotent: a venv whose marker matches is kept. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="target/interop-venv/epay"
marker="$dir/.kami-installed"
want="epay-sdk==0.4.1 epusdt==0.4.0 cryptography"
check='import epay_sdk, epusdt.signature, cryptography'
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
  echo "epay interop: venv ready"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check $want
"$dir/bin/python" -c "$check"
echo "$want" > "$marker"
echo "epay interop: venv installed ($want)"
