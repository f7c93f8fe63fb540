-- Every index on orders is paid for by every order (insert) and every status change. These two
-- are prefixes of the covering stats indexes of 0014 and answer nothing those do not:
-- orders_created (created_at) ⊂ orders_created_stats (created_at, channel_id, paid_at);
-- orders_paid (paid_at) WHERE paid_at IS NOT NULL ⊂ orders_paid_stats (paid_at, …) with the same
-- predicate.
DROP INDEX IF EXISTS orders_created;
DROP INDEX IF EXISTS orders_paid;
