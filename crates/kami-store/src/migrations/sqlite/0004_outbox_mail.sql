-- Outbox consumers (buyer mail first). A row is due while `done_at IS NULL` and
-- `available_at <= now`; a consumer claims it by moving `available_at` past its lease and
-- counting the attempt. `last_error` keeps the latest failure of a row still being retried;
-- `gave_up` = 1 marks a row finished without success (then `last_error` says why).
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN gave_up INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_kind_due ON outbox (kind, available_at) WHERE done_at IS NULL;
CREATE INDEX outbox_order ON outbox (order_id, kind);
