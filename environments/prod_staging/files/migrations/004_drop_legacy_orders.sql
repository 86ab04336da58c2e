-- 004: retire the pre-2020 order table and flag archived orders
DROP TABLE legacy_orders;
ALTER TABLE orders ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
