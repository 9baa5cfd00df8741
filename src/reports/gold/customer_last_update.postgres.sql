-- Postgres twin of customer_last_update.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header.
SELECT
    c.id AS customer_id,
    c.country,
    max(o.ordered_at) FILTER (WHERE o.status <> 'draft') AS last_order_at,
    greatest(c.updated_at, coalesce(max(o.updated_at), c.updated_at)) AS last_update
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id
GROUP BY c.id, c.country, c.updated_at
ORDER BY customer_id
