-- Storefront: categories and ordering, quantity limits and wholesale tiers per product;
-- the buyer's language (for mail) and the payment action (so the checkout page can show
-- the QR code or the jump again) per order; lookups by email.
ALTER TABLE products ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN sort_order INTEGER NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN min_quantity INTEGER NOT NULL DEFAULT 1;
ALTER TABLE products ADD COLUMN max_quantity INTEGER NOT NULL DEFAULT 100;
-- "MIN:PRICE,MIN:PRICE" (unit price in minor units from MIN pieces on), '' = none
ALTER TABLE products ADD COLUMN price_tiers TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN locale TEXT NOT NULL DEFAULT 'zh-CN';
ALTER TABLE orders ADD COLUMN pay_action TEXT;
ALTER TABLE orders ADD COLUMN pay_target TEXT;
-- (orders_email on (email) exists since 0001)
