-- Prices in more than one currency (issue 12 part 5). A product's own prices in other
-- currencies, per unit ("USD:999,JPY:1500", minor units): a channel that cannot take the
-- product's currency is charged these before the [fx] rate table is asked.
ALTER TABLE products ADD COLUMN prices TEXT NOT NULL DEFAULT '';
-- What the order is charged in when its channel cannot take the product's currency (NULL: the
-- order's own amount and currency, the shop's).
ALTER TABLE orders ADD COLUMN charge_amount BIGINT;
ALTER TABLE orders ADD COLUMN charge_currency TEXT;
-- How an attempt's amount follows from the order's ("the product's USD price 9.99",
-- "1 USD = 7.245 CNY, rounded up"); NULL: the same amount and currency.
ALTER TABLE payments ADD COLUMN charge_basis TEXT;
