#!/usr/bin/env bash
# Interop for the USDT gateways' MD5 signatures (interop/epusdt/check.py, driven by
# `cargo test -p kami-sim --test epusdt interop`): Python's standard library only (hashlib,
# json), so nothing is installed; this checks that python3 runs the script's own vectors.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import hashlib, json' 
echo "epusdt interop: python3 ready"
