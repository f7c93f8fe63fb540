-- Nothing for SQLite: its single writer needs no lock, and orders.rs counts with a plain
-- query (PostgreSQL gets kami_pending_counts in this migration).
SELECT 1;
