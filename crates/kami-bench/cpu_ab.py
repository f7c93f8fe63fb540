#!/usr/bin/env python3
"""CPU per delivered order of the kami server and its PostgreSQL backends (not the bench
client), during the load phase only (from kami-bench's "closed loop" line for its measured
wall time), polled from /proc every 50 ms. A/B interleaved:
    python3 crates/kami-bench/cpu_ab.py ROUNDS A_BIN B_BIN [CONFIG...]
(from the workspace root, after `cargo build --release -p kami-bench`)."""
import os, re, subprocess, sys, threading, time
BENCH = os.environ.get("KAMI_BENCH", "target/release/kami-bench")
PG = os.environ.get("KAMI_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
TICK = os.sysconf("SC_CLK_TCK")
CONFIGS = [
    ("sandbox-sqlite", ["--orders", "10000"]),
    ("sandbox-pg", ["--orders", "5000", "--database-url", PG]),
    ("alipay-sqlite", ["--method", "alipay", "--orders", "4000"]),
    ("alipay-pg", ["--method", "alipay", "--orders", "3000", "--database-url", PG]),
]
def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
        parts = f[f.rindex(")") + 2:].split()
        return (int(parts[11]) + int(parts[12])) / TICK
    except (OSError, ValueError):
        return None
def cmd(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
def run(bin_, args):
    p = subprocess.Popen([BENCH, "--kami", bin_, "--calibrate-commits", "0", "--buyers", "64"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, t0 = [], [None]
    def reader():
        for line in p.stdout:
            if line.startswith("closed loop:") and t0[0] is None:
                t0[0] = time.monotonic()
            lines.append(line)
    th = threading.Thread(target=reader); th.start()
    seen, samples = {}, []
    while p.poll() is None:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            c = cmd(d)
            if c.startswith(bin_ + " serve") or ("postgres:" in c and "kami_bench_" in c):
                t = cpu(d)
                if t is not None:
                    seen[d] = (t, c.startswith("postgres"))
        samples.append((time.monotonic(), sum(v for v, _ in seen.values()), sum(v for v, db in seen.values() if db)))
        time.sleep(0.05)
    th.join()
    out = "".join(lines)
    m = re.search(r"throughput\s+([\d.]+) delivered orders/s over ([\d.]+) s", out)
    d = re.search(r"delivered (\d+)\s+paid", out)
    n = int(d.group(1)) if d else 0
    ok = "INTEGRITY: PASS" in out
    if not (m and t0[0] and n):
        return 0, 0, 0, n, ok
    tp, wall = float(m.group(1)), float(m.group(2))
    def at(t):
        return min(samples, key=lambda s: abs(s[0] - t))
    a, b = at(t0[0]), at(t0[0] + wall)
    return tp, (b[1] - a[1]) / n * 1e6, (b[2] - a[2]) / n * 1e6, n, ok
rounds = int(sys.argv[1])
labels = [c for c, _ in CONFIGS]
only = [a for a in sys.argv[2:] if a in labels]
bins = [(chr(ord("A") + i), b) for i, b in enumerate(a for a in sys.argv[2:] if a not in labels)]
rates = {}
for r in range(1, rounds + 1):
    turn = (r - 1) % len(bins)
    order = bins[turn:] + bins[:turn]
    for label, args in CONFIGS:
        if only and label not in only:
            continue
        for w, b in order:
            tp, per, dbper, n, ok = run(b, args)
            rates.setdefault((label, w), []).append(tp)
            print(f"r{r} {label} {w} | {tp:8.1f} orders/s | CPU per order: kami {per - dbper:6.1f} µs + db {dbper:6.1f} µs = {per:7.1f} µs | {n} orders | {'PASS' if ok else 'FAIL'} | load {open('/proc/loadavg').read().split()[0]}", flush=True)
print("mean orders/s (difference from A):")
for label, _ in CONFIGS:
    if ("A" not in [w for w, _ in bins]) or (label, "A") not in rates:
        continue
    base = sum(rates[(label, "A")]) / len(rates[(label, "A")])
    cells = []
    for w, _ in bins:
        m = sum(rates[(label, w)]) / len(rates[(label, w)])
        cells.append(f"{w} {m:7.1f}" + ("" if w == "A" else f" ({(m / base - 1) * 100:+.1f} %)"))
    print(f"  {label:15} " + " | ".join(cells))
