-- Postgres twin of order_attributes.keys.duckdb.sql over the source tables.
SELECT DISTINCT jsonb_object_keys(attributes) AS key
FROM orders
WHERE jsonb_typeof(attributes) = 'object'
