-- The pending caps' counts (kami_pending_counts) ran on orders_pending_expiry: a plan made
-- while the table is small costs every partial index alike, PostgreSQL keeps the newest on a
-- tie, and the plan stays cached on the pooled connection. Then every order scanned all
-- pending orders of the shop, and the stale entries of those already paid (measured: 100
-- pages per order at 64 buyers). Each count now has exactly one partial index its WHERE
-- implies, its own key's (`= $1` implies `IS NOT NULL`), and the expiry job sweeps the
-- pending range of orders_status_id (status, id) instead, one index entry less per order.
DROP INDEX IF EXISTS orders_pending_expiry;
DROP INDEX IF EXISTS orders_pending_client;
DROP INDEX IF EXISTS orders_pending_email;
CREATE INDEX orders_pending_client ON orders (client_ip, expires_at)
    WHERE status = 'pending' AND client_ip IS NOT NULL;
CREATE INDEX orders_pending_email ON orders (email, expires_at)
    WHERE status = 'pending' AND email IS NOT NULL;
