-- A notification finds its payment by (channel_id, trade_no), the UNIQUE key. 0020's
-- payments_channel_created (channel_id, created_at) also leads with channel_id, and a plan
-- PostgreSQL caches while the table is small can pick it for that lookup: then every
-- notification scanned all of the channel's payments (measured: 900 pages per lookup at 3,000
-- payments). Leading with the time leaves the key as the only index for the lookup and still
-- serves a reconciliation day's payments of a channel.
DROP INDEX IF EXISTS payments_channel_created;
CREATE INDEX payments_created_channel ON payments (created_at, channel_id);
