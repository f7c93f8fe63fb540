-- Reconciliation against the channels' bills (对账, issue 11 part 4). One batch per (channel,
-- bill day): a re-run replaces its result in place (items deleted and written again in the
-- transaction that finishes it), so a day never has two results. `bill_day` is a calendar
-- date in Beijing time (YYYY-MM-DD). `source`: `bill` (the channel's checked bill) or `query`
-- (no bill: each trade asked). `counts`: JSON object, item kind → how many.
CREATE TABLE reconciliation_batches (
    id             INTEGER PRIMARY KEY,
    channel_id     TEXT   NOT NULL,
    bill_day       TEXT   NOT NULL,
    status         TEXT   NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    source         TEXT   NOT NULL DEFAULT '',
    actor          TEXT   NOT NULL,
    runs           INTEGER NOT NULL DEFAULT 1,
    bill_payments  INTEGER,
    bill_paid      INTEGER,
    bill_refunds   INTEGER,
    bill_refunded  INTEGER,
    counts         TEXT   NOT NULL DEFAULT '{}',
    mismatches     INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    UNIQUE (channel_id, bill_day)
);
CREATE INDEX reconciliation_batches_day ON reconciliation_batches (bill_day, id);

-- What a batch found. Amounts in minor units of their currency; `handled_*`: the seller
-- looked at it (kept across re-runs for the same kind and trade).
CREATE TABLE reconciliation_items (
    id                INTEGER PRIMARY KEY,
    batch_id          INTEGER NOT NULL REFERENCES reconciliation_batches(id),
    kind              TEXT   NOT NULL,
    trade_no          TEXT   NOT NULL DEFAULT '',
    refund_no         TEXT   NOT NULL DEFAULT '',
    gateway_trade_no  TEXT,
    order_no          TEXT,
    kami_amount       INTEGER,
    kami_currency     TEXT,
    bill_amount       INTEGER,
    bill_currency     TEXT,
    detail            TEXT   NOT NULL DEFAULT '',
    handled_at        INTEGER,
    handled_by        TEXT,
    handled_note      TEXT
);
CREATE INDEX reconciliation_items_batch ON reconciliation_items (batch_id, id);

-- Trades kami holds paid that the bill of their day did not list (the gateway may cut them
-- into the next day's bill). Resolved when a later bill lists them (`matched`), or after
-- `reconciliation.carry_over_days` as `missing` (a "missing at channel" item). A re-run of a
-- day first undoes what that day resolved and pooled.
CREATE TABLE reconciliation_carry_over (
    channel_id        TEXT   NOT NULL,
    trade_no          TEXT   NOT NULL,
    first_day         TEXT   NOT NULL,
    order_no          TEXT,
    amount            INTEGER NOT NULL,
    currency          TEXT   NOT NULL,
    gateway_trade_no  TEXT,
    resolved_day      TEXT,
    resolution        TEXT,
    PRIMARY KEY (channel_id, trade_no)
);

-- Jobs that must run once across every kami process on the database: a compare-and-set on
-- `lease_until` claims a run, `done_key` says which run (e.g. the bill day) is done.
CREATE TABLE job_leases (
    name         TEXT   PRIMARY KEY,
    holder       TEXT,
    lease_until  INTEGER,
    done_key     TEXT
);
INSERT INTO job_leases (name) VALUES ('reconciliation');

-- A bill day's payments of one channel, read by every reconciliation (its refunds use
-- refunds_settled of 0014).
CREATE INDEX payments_channel_paid ON payments (channel_id, paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX payments_channel_created ON payments (channel_id, created_at);

-- The bill day whose bill first listed the payment: a payment kami recorded paid on a later
-- day (a notification or a recovery after midnight) is then not "missing" from that day's bill.
ALTER TABLE payments ADD COLUMN billed_day TEXT;
