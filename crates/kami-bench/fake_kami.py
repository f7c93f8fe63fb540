#!/usr/bin/env python3
"""Fake kami: just the HTTP contract kami-bench drives, to test the bench without the server.

    cargo run --release -p kami-bench -- --kami crates/kami-bench/fake_kami.py --orders 500

FAKE_BUG=dup (one card delivered twice), lose (orders ending in 7 never delivered) or
nolist (admin order list answers 404) make the bench's integrity checks fire.
"""
import json, os, sys, threading, time, itertools, secrets
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

if sys.argv[1:4] == ["admin", "token", "create"]:
    print("created admin token bench\nstore it now:\nTOKEN-FAKE")
    sys.exit(0)
assert sys.argv[1] == "serve", sys.argv
BUG = os.environ.get("FAKE_BUG", "")
lock = threading.Condition()
products = {}
orders = {}
seq = itertools.count(1)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def body(self):
        n = int(self.headers.get("content-length", 0))
        return self.rfile.read(n).decode()
    def admin(self):
        if self.headers.get("authorization") != "Bearer TOKEN-FAKE":
            self.send(401, {"error": {"code": "unauthorized", "message": "no"}}); return False
        return True
    def do_POST(self):
        u = urlparse(self.path); parts = u.path.strip("/").split("/")
        data = self.body()
        if u.path == "/api/v1/admin/products":
            if not self.admin(): return
            p = json.loads(data)
            with lock: products[p["slug"]] = {"cards": [], "seen": set()}
            return self.send(201, {"slug": p["slug"]})
        if parts[:4] == ["api", "v1", "admin", "products"] and parts[-1] == "cards":
            if not self.admin(): return
            imp = dup = 0
            with lock:
                pr = products[parts[4]]
                for line in data.splitlines():
                    if not line: continue
                    if line in pr["seen"]: dup += 1
                    else: pr["seen"].add(line); pr["cards"].append(line); imp += 1
            return self.send(200, {"imported": imp, "duplicates": dup})
        if u.path == "/api/v1/orders":
            req = json.loads(data)
            with lock:
                pr = products[req["product"]]
                q = req["quantity"]
                if len(pr["cards"]) < q:
                    return self.send(409, {"error": {"code": "out_of_stock", "message": "sold out"}})
                cards = [pr["cards"].pop() for _ in range(q)]
                if BUG == "dup" and len(orders) == 3: pr["cards"].append(cards[0])
                no = "K%012d" % next(seq)
                tok = secrets.token_hex(8)
                orders[no] = {"status": "pending", "token": tok, "cards": cards}
            return self.send(201, {"order_no": no, "access_token": tok, "status": "pending",
                                   "payment": {"action": "redirect", "url": "http://%s/sim/sandbox/pay?order=%s&sig=a%%2Bb" % (self.headers["host"], no)}})
        if u.path == "/sim/sandbox/pay":
            assert "notify=normal" in data and self.headers.get("accept") == "application/json"
            no = parse_qs(u.query)["order"][0]
            assert parse_qs(u.query)["sig"][0] == "a+b"
            def notify():
                time.sleep(0.005)
                with lock:
                    if BUG == "lose" and no.endswith("7"): return
                    orders[no]["status"] = "delivered"; lock.notify_all()
            threading.Thread(target=notify).start()
            return self.send(200, {"status": "paid"})
        self.send(404, {"error": {"code": "not_found", "message": self.path}})
    def do_GET(self):
        u = urlparse(self.path); parts = u.path.strip("/").split("/"); qs = parse_qs(u.query)
        if parts[:3] == ["api", "v1", "orders"] and len(parts) == 4:
            with lock:
                o = orders.get(parts[3])
                if not o or self.headers.get("authorization") != "Bearer " + o["token"]:
                    return self.send(401, {"error": {"code": "unauthorized", "message": "x"}})
                deadline = time.time() + int(qs.get("wait", ["0"])[0])
                while o["status"] == "pending" and time.time() < deadline:
                    lock.wait(deadline - time.time())
                out = {"order_no": parts[3], "status": o["status"]}
                if o["status"] == "delivered": out["cards"] = o["cards"]
            return self.send(200, out)
        if u.path == "/api/v1/admin/orders":
            if BUG == "nolist": return self.send(404, {"error": {"code": "not_found", "message": "x"}})
            if not self.admin(): return
            limit = int(qs["limit"][0]); before = qs.get("before", [None])[0]
            with lock:
                nos = sorted((n for n, o in orders.items() if o["status"] == qs["status"][0] and (before is None or n < before)), reverse=True)
            page = nos[:limit]
            return self.send(200, {"orders": [{"order_no": n, "status": "delivered"} for n in page],
                                   "next_before": page[-1] if len(page) == limit else None})
        self.send(404, {"error": {"code": "not_found", "message": self.path}})

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print("\x1b[32m INFO\x1b[0m kami_server: listening on http://127.0.0.1:%d" % srv.server_address[1], file=sys.stderr, flush=True)
srv.serve_forever()
