-- Issue 10 parts 3 and 9: product images, categories with their own order, admin users that
-- can be disabled.
-- A product's picture and its thumbnail: media file names (`<sha256 hex>.<ext>`, content
-- addressed) in `<server.data_dir>/media`, served at `/media/<name>`; NULL: none.
ALTER TABLE products ADD COLUMN image TEXT;
ALTER TABLE products ADD COLUMN image_thumb TEXT;
CREATE INDEX products_category ON products (category, sort_order, id);
-- The catalogue's groups in the seller's order. `products.category` names one ('' = none);
-- naming a new one on a product creates it.
CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    sort_order  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
-- The groups that exist, in the order the storefront showed them (by their first product).
INSERT INTO categories (name, sort_order, created_at)
SELECT f.category, 10 * ROW_NUMBER() OVER (ORDER BY f.sort_order, f.id), 0
FROM products f
WHERE f.category <> '' AND NOT EXISTS (
    SELECT 1 FROM products q WHERE q.category = f.category
      AND (q.sort_order < f.sort_order OR (q.sort_order = f.sort_order AND q.id < f.id)));
-- A disabled user cannot sign in and has no session; NULL: enabled.
ALTER TABLE admin_users ADD COLUMN disabled_at INTEGER;
