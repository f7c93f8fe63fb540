-- The dashboard and `GET /api/v1/admin/stats`.
-- Every payment channel create call: its outcome and how long it took (one INSERT after the
-- call, outside the order's transaction). p95 latencies are read from here; the hourly
-- retention job deletes rows older than 90 days.
CREATE TABLE channel_calls (
    id           INTEGER PRIMARY KEY,
    channel_id   TEXT   NOT NULL,
    method       TEXT   NOT NULL,
    outcome      TEXT   NOT NULL CHECK (outcome IN ('ok', 'error', 'timeout')),
    duration_ms  INTEGER NOT NULL CHECK (duration_ms >= 0),
    at           INTEGER NOT NULL
);
-- range scans by time (stats, pruning); covering, so the per-channel histogram reads no rows
CREATE INDEX channel_calls_at ON channel_calls (at, channel_id, outcome, duration_ms);
-- refunds by the day they settled (refunded amounts per day)
CREATE INDEX refunds_settled ON refunds (settled_at) WHERE status = 'succeeded';
-- Covering indexes for the per-day counts: the range scan reads every column the grouping
-- needs from the index, never the table (100,000 orders in a month stay fast).
CREATE INDEX orders_created_stats ON orders (created_at, channel_id, paid_at);
CREATE INDEX orders_paid_stats ON orders (paid_at, channel_id, currency, amount)
    WHERE paid_at IS NOT NULL;
