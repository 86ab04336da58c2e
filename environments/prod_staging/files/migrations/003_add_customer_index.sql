-- 003: speed up order lookups by customer
CREATE INDEX idx_orders_customer ON orders(customer_id);
