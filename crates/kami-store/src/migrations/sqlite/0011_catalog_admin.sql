-- Seller operations on products and card keys (DESIGN 4.3 "Seller operations").
-- What a product asks the buyer (JSON array of {name, label, required, pattern?}), and the
-- buyer's answers per order (sealed JSON object, `kami/orders.fields/<order id>`).
ALTER TABLE products ADD COLUMN input_fields TEXT NOT NULL DEFAULT '[]';
ALTER TABLE orders ADD COLUMN fields BLOB;
CREATE INDEX orders_with_fields ON orders (id) WHERE fields IS NOT NULL;
-- One row per card-key import: what it brought and who ran it.
CREATE TABLE card_batches (
    id          INTEGER PRIMARY KEY,
    product_id  INTEGER NOT NULL REFERENCES products(id),
    is_loop     INTEGER NOT NULL DEFAULT 0,
    imported    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX card_batches_product ON card_batches (product_id, id);
ALTER TABLE cards ADD COLUMN batch_id INTEGER REFERENCES card_batches(id);
CREATE INDEX cards_batch ON cards (batch_id, id);
-- The admin order list, newest first by creation (id), with or without a status.
CREATE INDEX orders_status_id ON orders (status, id);
