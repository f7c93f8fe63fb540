-- A USDT attempt's coin amount ("4.25 USDT"), as its gateway's create answered: shown beside
-- the fiat amount, and a payment reporting another coin amount (an underpayment) is refused.
ALTER TABLE payments ADD COLUMN coin_amount TEXT;
