-- Channel measures (issue 11 part 2): the gateway's pay time and how each payment was found,
-- the payment method of each create call, and indexes so the channel page reads 7 days of
-- figures as range scans.
--
-- `gateway_paid_at`: when the gateway says the buyer paid (unix ms; NULL when it did not say
-- or the time did not parse). `found_by`: what confirmed the payment: its notification, an
-- active query, the close before expiry, the seller's "check payment", or a bill
-- (reconciliation). Both are set in the transaction that confirms the payment.
ALTER TABLE payments ADD COLUMN gateway_paid_at BIGINT;
ALTER TABLE payments ADD COLUMN found_by TEXT
    CHECK (found_by IN ('notify', 'query', 'close', 'seller_check', 'bill'));
-- payments confirmed in a window, by channel and how they were found (notify lag, 掉单)
CREATE INDEX payments_found ON payments (paid_at, channel_id, found_by, gateway_paid_at, order_id)
    WHERE paid_at IS NOT NULL;

-- channel_calls: the payment method of the call (`pay_method`, '' for calls recorded before)
-- and the finer outcomes (the gateway refused, unreachable, timed out, answered garbage, the
-- flavour is not supported, the channel is misconfigured).
ALTER TABLE channel_calls ADD COLUMN pay_method TEXT NOT NULL DEFAULT '';
ALTER TABLE channel_calls DROP CONSTRAINT channel_calls_outcome_check;
ALTER TABLE channel_calls ADD CONSTRAINT channel_calls_outcome_check
    CHECK (outcome IN ('ok', 'error', 'timeout', 'gateway_error', 'transport_error',
                       'bad_response', 'unsupported', 'config_error'));
-- covering for both the dashboard's per-channel read and the channel page's per method
DROP INDEX channel_calls_at;
CREATE INDEX channel_calls_at ON channel_calls (at, channel_id, method, pay_method, outcome, duration_ms);

-- orders created in a window per channel and method, and how many are paid: covering
DROP INDEX orders_created_stats;
CREATE INDEX orders_created_stats ON orders (created_at, channel_id, method, paid_at);

-- notifications that failed (forged, amount mismatch, unknown trade, not confirmed by query)
-- per channel in a window
CREATE INDEX payment_events_outcome ON payment_events (outcome, received_at, channel_id);
