-- Postgres twin of revenue_by_country.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header.
WITH order_revenue AS (
    SELECT
        o.id,
        o.customer_id,
        o.status,
        coalesce(
            sum(i.quantity * i.unit_price)
                FILTER (WHERE o.status IN ('placed', 'paid', 'shipped') OR (o.status = 'cancelled' AND i.quantity < 0)),
            0
        ) AS revenue
    FROM orders o
    LEFT JOIN order_items i ON i.order_id = o.id
    WHERE o.status <> 'draft'
    GROUP BY o.id, o.customer_id, o.status
)
SELECT
    c.country,
    count(DISTINCT r.customer_id) AS customers,
    count(*) FILTER (WHERE r.status IN ('placed', 'paid', 'shipped')) AS orders,
    count(*) FILTER (WHERE r.status = 'cancelled') AS cancellations,
    CAST(sum(r.revenue) AS DECIMAL(18, 2)) AS revenue
FROM order_revenue r
LEFT JOIN customers c ON c.id = r.customer_id
GROUP BY c.country
ORDER BY revenue DESC, country COLLATE "C"
