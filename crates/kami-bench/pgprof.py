#!/usr/bin/env python3
"""What PostgreSQL does per delivered order, statement by statement, for one kami-bench run
(sandbox path unless bench args say otherwise):
    python3 crates/kami-bench/pgprof.py KAMI_BIN ORDERS [kami-bench args...]
Needs a PostgreSQL cluster of its own on 127.0.0.1:5433 with, in postgresql.conf,
`shared_preload_libraries = 'pg_stat_statements'` and `pg_stat_statements.track = all`, and
`CREATE EXTENSION pg_stat_statements` in its `postgres` database. The counters are reset
before the run; the bench's throw-away database is gone after it, so every statement of a
database that no longer exists is the run's. Prints WAL per order, then each statement's
execution time, calls, buffers per call and WAL per order (T = sent by kami, not nested)."""
import os, re, subprocess, sys
PG = "postgres://postgres@127.0.0.1:5433/postgres"
BENCH = os.environ.get("KAMI_BENCH", "target/release/kami-bench")
def q(sql):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", "5433", "-U", "postgres", "-AtF", "\t", "-c", sql],
                          capture_output=True, text=True, check=True).stdout
bin_, n = sys.argv[1], sys.argv[2]
q("select pg_stat_statements_reset(); select pg_stat_reset_shared('wal');")
out = subprocess.run([BENCH, "--kami", bin_, "--calibrate-commits", "0",
                      "--buyers", "64", "--orders", n, "--database-url", PG] + sys.argv[3:],
                     capture_output=True, text=True).stdout
m = re.search(r"throughput\s+([\d.]+) delivered orders/s", out)
d = int(re.search(r"delivered (\d+)\s+paid", out).group(1))
print(f"# {bin_}: {m.group(1) if m else '?'} orders/s, {d} delivered, {'PASS' if 'INTEGRITY: PASS' in out else 'FAIL'}")
wal = q("select wal_records, wal_fpi, wal_bytes from pg_stat_wal").split()
print(f"# WAL per order: records {int(wal[0])/d:.1f} fpi {int(wal[1])/d:.2f} bytes {int(wal[2])/d:.0f}")
rows = q("""select calls, total_exec_time, shared_blks_hit+shared_blks_read+shared_blks_dirtied, wal_bytes, toplevel,
  regexp_replace(query, '\\s+', ' ', 'g') from pg_stat_statements
  where dbid not in (select oid from pg_database) order by total_exec_time desc""")
tot = 0.0
lines = []
for r in rows.strip().split("\n"):
    if not r: continue
    c, t, b, w, top, sql = r.split("\t", 5)
    if top == 't': tot += float(t)
    lines.append((float(t), int(c), int(b), int(w), top, sql))
calls = sum(c for t, c, b, w, top, sql in lines if top == 't' and not sql.startswith(('CREATE', 'ALTER', '--', 'INSERT INTO kami_migrations')))
blks = sum(b for t, c, b, w, top, sql in lines if top == 't' and not sql.startswith(('CREATE', 'ALTER', '--')))
print(f"# exec time per order (top-level statements): {tot*1000/d:.1f} µs; statements per order {calls/d:.2f}; buffers per order {blks/d:.1f}")
for t, c, b, w, top, sql in lines[:40]:
    print(f"{t*1000/d:8.1f} µs/order {c/d:6.2f} calls/order {b/max(c,1):6.1f} blk/call {w/d:7.0f} walB/order {'T' if top=='t' else ' '} {sql[:170]}")
