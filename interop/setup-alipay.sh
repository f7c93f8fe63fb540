#!/usr/bin/env bash
# Interop venvs for the Alipay SDK cross-checks (interop/alipay/check.py, driven by
# the `sdk_interop` test in crates/kami-sim/tests/alipay.rs). The two SDKs both ship a top-level
# `alipay` package, so each gets its own venv:
#   target/interop-venv/alipay-official  alipay-sdk-python==3.7.1411 (official, Apache-2.0)
#   target/interop-venv/alipay-fzlee     python-alipay-sdk==3.4.0    (fzlee, BSD)
# Idempotent: a venv whose marker file exists is kept. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
root="target/interop-venv"
mkdir -p "$root"

make_venv() { # name, pip packages...
  local name=$1; shift
  local dir="$root/$name"
  local marker="$dir/.kami-installed"
  local want="$*"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$dir/bin/python" -c 'import alipay' 2>/dev/null; then
    echo "alipay interop: $name venv ready"
    return
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  "$dir/bin/python" -c 'import alipay'
  echo "$want" > "$marker"
  echo "alipay interop: $name venv installed ($want)"
}

# Pinned to the versions the cross-check was last run with. The official SDK signs with
# python-rsa (and imports pycryptodome); fzlee's uses pycryptodomex and pyOpenSSL.
# `cryptography` is what check.py itself uses to convert the generated keys.
make_venv alipay-official alipay-sdk-python==3.7.1411 pycryptodome==4.4.0 rsa==4.9.1 \
  cryptography==50.0.2
make_venv alipay-fzlee python-alipay-sdk==3.4.0 pycryptodomex==3.24.2 pyOpenSSL==26.4.0 \
  cryptography==50.0.2
