-- Risk rules (`[risk]`): the client key an order was placed under (an IPv4 address, or an
-- IPv6 /64 such as `2001:db8:1:2::/64`; NULL when unknown), and indexes to count a client's
-- or an email's pending orders inside the transaction that creates the next one.
ALTER TABLE orders ADD COLUMN client_ip TEXT;
CREATE INDEX orders_pending_client ON orders (client_ip, expires_at) WHERE status = 'pending';
CREATE INDEX orders_pending_email ON orders (email, expires_at) WHERE status = 'pending';
