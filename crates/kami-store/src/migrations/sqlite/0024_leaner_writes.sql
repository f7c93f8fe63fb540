-- Fewer writes per order (issue 9's benchmark).
--
-- 1. A CHECK of the form `x IN ('a', 'b', 'c')` makes SQLite build a temporary table of the
--    list every time a statement writes x: payments.found_by's (0022) cost every payment
--    inserted or confirmed one. The same check as an OR chain costs a few comparisons. SQLite
--    cannot change a CHECK in place: the column is re-added under the new check and the old
--    one dropped (ALTER TABLE DROP COLUMN rewrites the table in this transaction). (cards.status
--    has such a check too, but a table CHECK names the column, so only a rebuild of cards,
--    which orders reference, could change it.)
DROP INDEX payments_found;
ALTER TABLE payments RENAME COLUMN found_by TO found_by_before_0024;
ALTER TABLE payments ADD COLUMN found_by TEXT
    CHECK (found_by = 'notify' OR found_by = 'query' OR found_by = 'close'
           OR found_by = 'seller_check' OR found_by = 'bill');
UPDATE payments SET found_by = found_by_before_0024 WHERE found_by_before_0024 IS NOT NULL;
ALTER TABLE payments DROP COLUMN found_by_before_0024;
CREATE INDEX payments_found ON payments (paid_at, channel_id, found_by, gateway_paid_at, order_id)
    WHERE paid_at IS NOT NULL;

-- 2. Indexes that answer nothing another does not (each costs every payment a write):
-- payments_paid_at (paid_at) and payments_channel_paid (channel_id, paid_at), both WHERE paid_at
-- IS NOT NULL: a day's paid payments of one channel are a range of payments_found, which leads
-- with paid_at under the same predicate.
DROP INDEX payments_paid_at;
DROP INDEX payments_channel_paid;
-- The gateway's trade number: one index, only for payments that have one (a payment gets it
-- when confirmed; `gateway_trade_no = $1` implies IS NOT NULL, so every lookup can use it,
-- the channel's re-use check included).
DROP INDEX payments_gateway_trade;
DROP INDEX payments_gateway_trade_no;
CREATE INDEX payments_gateway_trade ON payments (gateway_trade_no) WHERE gateway_trade_no IS NOT NULL;
-- A trade's notifications: payment_events_trade_no (trade_no, id) finds them; the channel is a
-- filter on those few rows.
DROP INDEX payment_events_trade;
-- The expiry job's index holds only pending orders (status leads, so SQLite's planner prefers
-- it to orders_status_id): a paid order leaves it instead of being
-- re-filed under its new status (on PostgreSQL, where every status change writes a new entry
-- into each index whose predicate the row meets, one index less per order).
DROP INDEX IF EXISTS orders_expiry;
CREATE INDEX orders_pending_expiry ON orders (status, expires_at) WHERE status = 'pending';
