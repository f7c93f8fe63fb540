-- Active payment checks: while a payment is `created`, a worker asks the channel about it at
-- `next_check_at` (backoff), and closes it at the channel before the order may expire.
-- `lease_until` lets several kami processes share the work without doing it twice.
ALTER TABLE payments ADD COLUMN next_check_at INTEGER;
ALTER TABLE payments ADD COLUMN check_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN lease_until INTEGER;
CREATE INDEX payments_check ON payments (next_check_at) WHERE next_check_at IS NOT NULL;
-- payments already waiting at upgrade are checked too
UPDATE payments SET next_check_at = created_at + 5000 WHERE status = 'created';

-- Refunds: recorded `pending` before the channel is called (with a stable refund number the
-- channel de-duplicates on), then `succeeded` or `failed`. Pending ones are retried.
CREATE TABLE refunds (
    id             INTEGER PRIMARY KEY,
    order_id       INTEGER NOT NULL REFERENCES orders(id),
    payment_id     INTEGER NOT NULL REFERENCES payments(id),
    refund_no      TEXT    NOT NULL UNIQUE,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT    NOT NULL,
    reason         TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    error          TEXT,
    created_at     INTEGER NOT NULL,
    settled_at     INTEGER,
    next_check_at  INTEGER,
    lease_until    INTEGER
);
CREATE INDEX refunds_order ON refunds (order_id);
CREATE INDEX refunds_check ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
