-- Unverified notifications are deleted after [retention] rejected_events_days: find them by age.
CREATE INDEX payment_events_unverified ON payment_events (received_at) WHERE verified = 0;
