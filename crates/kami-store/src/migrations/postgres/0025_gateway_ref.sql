-- The gateway's own id of a payment attempt, for gateways that know a trade by theirs and not
-- by kami's trade number (a Stripe Checkout Session, a PayPal order): returned by the create
-- call, kept here, and named back to the gateway to query, close or refund the attempt.
ALTER TABLE payments ADD COLUMN gateway_ref TEXT;
