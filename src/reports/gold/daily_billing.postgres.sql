-- Postgres twin of daily_billing.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header.
WITH order_revenue AS (
    SELECT
        o.id,
        o.customer_id,
        o.status,
        CAST(o.ordered_at AT TIME ZONE 'UTC' AS DATE) AS day,
        coalesce(
            sum(i.quantity * i.unit_price)
                FILTER (WHERE o.status IN ('placed', 'paid', 'shipped') OR (o.status = 'cancelled' AND i.quantity < 0)),
            0
        ) AS revenue
    FROM orders o
    LEFT JOIN order_items i ON i.order_id = o.id
    WHERE o.status <> 'draft' AND o.customer_id IS NOT NULL
    GROUP BY o.id, o.customer_id, o.status, day
)
SELECT
    customer_id,
    day,
    count(*) FILTER (WHERE status IN ('placed', 'paid', 'shipped')) AS orders,
    count(*) FILTER (WHERE status = 'cancelled') AS cancellations,
    CAST(sum(revenue) AS DECIMAL(18, 2)) AS amount_billed
FROM order_revenue
GROUP BY customer_id, day
ORDER BY customer_id, day
