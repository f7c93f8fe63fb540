#!/usr/bin/env bash
# Interop venv for the PayPal webhook cross-check (interop/paypal/check.py, driven by
# `cargo test -p kami-sim --test paypal interop`):
#   target/interop-venv/paypal  cryptography  (X.509 CA and signing certificate, SHA256withRSA)
# plus Python's own zlib.crc32: the reference for the signed message
# `transmission_id|transmission_time|webhook_id|crc32(body)` (paypalrestsdk's
# WebhookEvent._get_expected_sig, which fetches PayPal's real chain and so cannot be used with
# a test CA; protocols.md appendix A.6). Idempotent: a venv whose marker matches is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="target/interop-venv/paypal"
marker="$dir/.kami-installed"
want="cryptography"
check='import zlib, cryptography.x509'
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
  echo "paypal interop: venv ready"
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
echo "paypal interop: venv installed ($want)"
