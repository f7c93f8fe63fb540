-- Nothing for SQLite: its planner takes the index whose leading column the WHERE fixes
-- (orders_pending_client / orders_pending_email for the caps' counts, orders_pending_expiry
-- for the expiry job). PostgreSQL's plans are fixed in this migration.
SELECT 1;
