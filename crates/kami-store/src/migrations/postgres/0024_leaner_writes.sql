-- Fewer writes per order (issue 9's benchmark). SQLite also rewrites two IN-list CHECKs, which
-- cost it a temporary table per write; PostgreSQL evaluates them as they are.
--
-- Indexes that answer nothing another does not (each costs every payment a write):
-- payments_paid_at (paid_at) and payments_channel_paid (channel_id, paid_at), both WHERE paid_at
-- IS NOT NULL: a day's paid payments of one channel are a range of payments_found, which leads
-- with paid_at under the same predicate.
DROP INDEX IF EXISTS payments_paid_at;
DROP INDEX IF EXISTS payments_channel_paid;
-- The gateway's trade number: one index, only for payments that have one (a payment gets it
-- when confirmed; `gateway_trade_no = $1` implies IS NOT NULL, so every lookup can use it,
-- the channel's re-use check included).
DROP INDEX IF EXISTS payments_gateway_trade;
DROP INDEX IF EXISTS payments_gateway_trade_no;
CREATE INDEX payments_gateway_trade ON payments (gateway_trade_no) WHERE gateway_trade_no IS NOT NULL;
-- A trade's notifications: payment_events_trade_no (trade_no, id) finds them; the channel is a
-- filter on those few rows.
DROP INDEX IF EXISTS payment_events_trade;
-- The expiry job's index holds only pending orders (status leads, so SQLite's planner prefers
-- it to orders_status_id): a paid order leaves it instead of being
-- re-filed under its new status (on PostgreSQL, where every status change writes a new entry
-- into each index whose predicate the row meets, one index less per order).
DROP INDEX IF EXISTS orders_expiry;
CREATE INDEX orders_pending_expiry ON orders (status, expires_at) WHERE status = 'pending';
