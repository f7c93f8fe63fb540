#!/usr/bin/env python3
"""Count the statements one database received, from the PostgreSQL server log (run kami with
`?options=-c%20log_statement%3Dall` on its database URL): python3 pg_statements.py DBNAME [LOG]."""
import re, sys, collections
db = sys.argv[1]
log = open(sys.argv[2] if len(sys.argv) > 2 else '/var/log/postgresql/postgresql-15-main.log', errors='replace').read().split('\n')
counts = collections.Counter()
cur = None
pat = re.compile(r'^\S+ \S+ UTC \[\d+\] \S+@(\S+) (LOG|DETAIL|ERROR|STATEMENT|HINT|WARNING):\s+(.*)$')
def flush():
    global cur
    if cur is not None:
        counts[re.sub(r'\s+', ' ', cur).strip()] += 1
    cur = None
for line in log:
    m = pat.match(line)
    if m:
        flush()
        if m.group(1) == db and m.group(2) == 'LOG':
            t = m.group(3)
            t = re.sub(r'^(statement|execute [^:]+):\s*', '', t)
            if t.startswith('duration'): continue
            cur = t
    elif line.startswith('\t') and cur is not None:
        cur += ' ' + line.strip()
flush()
for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"{v:7d} {k[:230]}")
