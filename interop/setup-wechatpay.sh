#!/usr/bin/env bash
# Interop venv for the WeChat Pay API v3 cross-check (interop/wechatpay/check.py, driven by
# `cargo test -p kami-sim --test wechatpay interop`):
#   target/interop-venv/wechatpay  wechatpayv3==2.0.4 (minibear2021, MIT) + cryptography
# Idempotent: a venv whose marker file matches is kept. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="target/interop-venv/wechatpay"
marker="$dir/.kami-installed"
want="wechatpayv3==2.0.4 cryptography"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] \
  && "$dir/bin/python" -c 'import wechatpayv3, cryptography' 2>/dev/null; then
  echo "wechatpay interop: venv ready"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
python3 -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check $want
"$dir/bin/python" -c 'import wechatpayv3, cryptography'
echo "$want" > "$marker"
echo "wechatpay interop: venv installed ($want)"
