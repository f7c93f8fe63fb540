#!/usr/bin/env bash
# A real SMTP server for the buyer-mail tests (crates/kami-server/tests/engine/mail.rs):
#   target/interop-venv/smtp  aiosmtpd==1.4.6 (PyPI, Apache-2.0: asyncio SMTP server with
#                             STARTTLS, implicit TLS and AUTH)
# The tests start interop/smtp/sink.py from this venv on a free port; it stores every message
# it accepts as a file. Idempotent: a venv whose marker matches is kept. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="target/interop-venv/smtp"
marker="$dir/.kami-installed"
want="aiosmtpd==1.4.6"
check='import aiosmtpd.controller, aiosmtpd.smtp'
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
  echo "smtp interop: venv ready"
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
echo "smtp interop: venv installed ($want)"
