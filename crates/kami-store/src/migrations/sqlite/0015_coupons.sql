-- Coupons (issue 10 part 7). `value`: minor units of `currency` (fixed) or basis points
-- (percent); `currency` is required for fixed coupons and for a minimum order amount.
-- `products`: JSON array of slugs, empty = every product. `used` is counted in the order's
-- transaction with a compare-and-set against `max_uses`, and given back when an unpaid
-- order expires or is cancelled.
CREATE TABLE coupons (
    id              INTEGER PRIMARY KEY,
    code            TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL CHECK (kind IN ('fixed', 'percent')),
    value           INTEGER NOT NULL CHECK (value >= 0),
    currency        TEXT,
    products        TEXT    NOT NULL DEFAULT '[]',
    valid_from      INTEGER,
    valid_to        INTEGER,
    max_uses        INTEGER CHECK (max_uses IS NULL OR max_uses >= 0),
    used            INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    once_per_email  INTEGER NOT NULL DEFAULT 0,
    min_amount      INTEGER CHECK (min_amount IS NULL OR min_amount >= 0),
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (max_uses IS NULL OR used <= max_uses)
);
ALTER TABLE orders ADD COLUMN coupon_id INTEGER REFERENCES coupons(id);
ALTER TABLE orders ADD COLUMN coupon_code TEXT;
ALTER TABLE orders ADD COLUMN discount INTEGER;
-- Once per email: the coupon's orders by email.
CREATE INDEX orders_coupon_email ON orders (coupon_id, email) WHERE coupon_id IS NOT NULL;
