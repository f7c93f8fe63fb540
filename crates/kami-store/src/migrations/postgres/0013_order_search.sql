-- The seller's order search (orders_search.rs): each filter has an index that also yields
-- the list's order (newest first by id), and the search box's gateway trade number has one.
CREATE INDEX orders_channel_id ON orders (channel_id, id);
CREATE INDEX orders_method_id ON orders (method, id);
CREATE INDEX orders_product_id ON orders (product_id, id);
CREATE INDEX orders_email_id ON orders (email, id);
CREATE INDEX payments_gateway_trade_no ON payments (gateway_trade_no);
-- An order's notifications for its timeline (payment_events_trade leads with the channel).
CREATE INDEX payment_events_trade_no ON payment_events (trade_no, id);
