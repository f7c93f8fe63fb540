-- Every index on orders is paid for by every order (insert) and every status change (an update
-- that changes an indexed column is never HOT, so it adds an entry to every index). These are
-- prefixes of other indexes and answer nothing those do not:
-- orders_created (created_at) ⊂ orders_created_stats (created_at, channel_id, paid_at);
-- orders_paid (paid_at) WHERE paid_at IS NOT NULL ⊂ orders_paid_stats (paid_at, …), same predicate;
-- orders_email (email) ⊂ orders_email_id (email, id).
DROP INDEX IF EXISTS orders_created;
DROP INDEX IF EXISTS orders_paid;
DROP INDEX IF EXISTS orders_email;
-- Room in each page for the updates that change no indexed column (the payment action, the
-- check schedule) to stay HOT: no index entries at all.
ALTER TABLE orders SET (fillfactor = 85);
