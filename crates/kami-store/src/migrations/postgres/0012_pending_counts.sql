-- The pending-order caps (orders.rs::check_pending_caps) in one round trip: take the client's
-- and the email's per-key locks until commit (the advisory locks of Tx::lock_key: class
-- 7263007, keys 'ip:…' and 'email:…', always client first), then count their unexpired
-- pending orders. Each statement of a VOLATILE PL/pgSQL function takes a fresh snapshot under
-- READ COMMITTED, so the counts see every order committed before the locks were granted.
CREATE FUNCTION kami_pending_counts(client TEXT, buyer_email TEXT, now_ms BIGINT)
RETURNS TABLE (client_n BIGINT, client_oldest BIGINT, email_n BIGINT, email_oldest BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF client IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(7263007, hashtext('ip:' || client));
    END IF;
    IF buyer_email IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(7263007, hashtext('email:' || buyer_email));
    END IF;
    RETURN QUERY
    SELECT c.n, c.oldest, e.n, e.oldest
    FROM (SELECT COUNT(*) AS n, MIN(o.expires_at) AS oldest FROM orders o
          WHERE o.client_ip = client AND o.status = 'pending' AND o.expires_at > now_ms) c,
         (SELECT COUNT(*) AS n, MIN(o.expires_at) AS oldest FROM orders o
          WHERE o.email = buyer_email AND o.status = 'pending' AND o.expires_at > now_ms) e;
END
$$;
