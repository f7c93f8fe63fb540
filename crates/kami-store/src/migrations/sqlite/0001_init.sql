-- kami schema v1 (SQLite). Times are unix milliseconds, money is integer minor units.
CREATE TABLE products (
    id            INTEGER PRIMARY KEY,
    slug          TEXT    NOT NULL UNIQUE,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    price         INTEGER NOT NULL CHECK (price >= 0),
    currency      TEXT    NOT NULL,
    delivery      TEXT    NOT NULL CHECK (delivery IN ('auto', 'manual')),
    manual_stock  INTEGER CHECK (manual_stock IS NULL OR manual_stock >= 0),
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

CREATE TABLE cards (
    id          INTEGER PRIMARY KEY,
    product_id  INTEGER NOT NULL REFERENCES products(id),
    secret      TEXT    NOT NULL,
    is_loop     INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL CHECK (status IN ('available', 'reserved', 'sold')),
    order_id    INTEGER REFERENCES orders(id),
    created_at  INTEGER NOT NULL,
    sold_at     INTEGER,
    -- a non-loop key belongs to an order exactly when it is reserved or sold
    CHECK (is_loop = 1 OR (status = 'available') = (order_id IS NULL))
);
CREATE UNIQUE INDEX cards_product_secret ON cards (product_id, secret);
CREATE INDEX cards_claim ON cards (product_id, status, id);
CREATE INDEX cards_order ON cards (order_id);
-- the (few) reusable keys, looked up on every order of their product
CREATE INDEX cards_loop ON cards (product_id, id) WHERE is_loop = 1;

CREATE TABLE orders (
    id                  INTEGER PRIMARY KEY,
    order_no            TEXT    NOT NULL UNIQUE,
    product_id          INTEGER NOT NULL REFERENCES products(id),
    quantity            INTEGER NOT NULL CHECK (quantity > 0),
    amount              INTEGER NOT NULL CHECK (amount >= 0),
    currency            TEXT    NOT NULL,
    email               TEXT    NOT NULL,
    method              TEXT    NOT NULL,
    channel_id          TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    access_token_hash   TEXT    NOT NULL,
    query_password_hash TEXT,
    loop_card_id        INTEGER REFERENCES cards(id),
    note                TEXT,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    paid_at             INTEGER,
    delivered_at        INTEGER
);
CREATE INDEX orders_expiry ON orders (status, expires_at);
CREATE INDEX orders_email ON orders (email);

CREATE TABLE payments (
    id                INTEGER PRIMARY KEY,
    order_id          INTEGER NOT NULL REFERENCES orders(id),
    channel_id        TEXT    NOT NULL,
    trade_no          TEXT    NOT NULL,
    gateway_trade_no  TEXT,
    amount            INTEGER NOT NULL,
    currency          TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    paid_at           INTEGER,
    UNIQUE (channel_id, trade_no)
);
CREATE INDEX payments_order ON payments (order_id);
-- Not unique: the binding that counts is our own (channel, trade_no) plus the amount. A gateway
-- reusing its trade number for another order is recorded as an alert, never a stuck payment.
CREATE INDEX payments_gateway_trade ON payments (channel_id, gateway_trade_no)
    WHERE gateway_trade_no IS NOT NULL;

-- every notification received, verified or not, exactly as it arrived
CREATE TABLE payment_events (
    id           INTEGER PRIMARY KEY,
    channel_id   TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    http_method  TEXT    NOT NULL,
    query        TEXT    NOT NULL,
    headers      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    verified     INTEGER NOT NULL,
    trade_no     TEXT,
    outcome      TEXT    NOT NULL,
    detail       TEXT
);
CREATE INDEX payment_events_trade ON payment_events (channel_id, trade_no);

-- work to do after a business change, written in the same transaction (mail, hooks, alerts)
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,
    order_id      INTEGER,
    payload       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    available_at  INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    done_at       INTEGER
);
CREATE INDEX outbox_due ON outbox (done_at, available_at);

CREATE TABLE admin_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE admin_users (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
