#!/usr/bin/env bash
# Interop venv for the Stripe cross-checks (interop/stripe/check.py, driven by
# `cargo test -p kami-sim --test stripe interop`):
#   target/interop-venv/stripe  stripe==16.1.0  (PyPI, MIT, the official Stripe library:
#                                                WebhookSignature.generate_signature_header /
#                                                verify_header, Webhook.construct_event, and its
#                                                form encoder for the create call's fields)
# Idempotent: a venv whose marker matches is kept. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="target/interop-venv/stripe"
marker="$dir/.kami-installed"
want="stripe==16.1.0"
check='import stripe, stripe._encode; assert stripe.VERSION == "16.1.0", stripe.VERSION'
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
  echo "stripe interop: venv ready"
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
echo "stripe interop: venv installed ($want)"
