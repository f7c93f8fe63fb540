-- Secrets at rest (kami-store/src/sealed.rs). `cards.secret` and `orders.fulfilment` hold
-- sealed bytes (AES-256-GCM under the master key); rows written by an older kami are sealed
-- in place at start (`keys.rs`), a card found by its NULL `secret_hash`. Import
-- de-duplication uses the keyed hash, as the sealed bytes differ for equal keys.
ALTER TABLE cards ADD COLUMN secret_hash BLOB;
DROP INDEX cards_product_secret;
CREATE UNIQUE INDEX cards_product_secret_hash ON cards (product_id, secret_hash);
CREATE INDEX cards_unsealed ON cards (id) WHERE secret_hash IS NULL;
CREATE INDEX orders_fulfilled ON orders (id) WHERE fulfilment IS NOT NULL;

-- The master keys secrets may be sealed under, each with a value sealed under it: a key file
-- that does not open its check value is not this database's key.
CREATE TABLE kami_keys (
    key_id       BLOB    PRIMARY KEY,
    check_value  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);
