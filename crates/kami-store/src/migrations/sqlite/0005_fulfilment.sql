-- What the seller gave the buyer for a manual order (`POST /api/v1/admin/orders/{no}/fulfil`);
-- NULL until the order is fulfilled.
ALTER TABLE orders ADD COLUMN fulfilment TEXT;
