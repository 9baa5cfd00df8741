-- Postgres twin of sales_per_minute.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header.
WITH order_revenue AS (
    SELECT
        o.id,
        o.status,
        date_trunc('minute', o.ordered_at AT TIME ZONE 'UTC') AS minute_utc,
        coalesce(
            sum(i.quantity * i.unit_price)
                FILTER (WHERE o.status IN ('placed', 'paid', 'shipped') OR (o.status = 'cancelled' AND i.quantity < 0)),
            0
        ) AS revenue
    FROM orders o
    LEFT JOIN order_items i ON i.order_id = o.id
    WHERE o.status <> 'draft'
    GROUP BY o.id, o.status, minute_utc
)
SELECT
    minute_utc AT TIME ZONE 'UTC' AS minute,
    count(*) FILTER (WHERE status IN ('placed', 'paid', 'shipped')) AS orders,
    count(*) FILTER (WHERE status = 'cancelled') AS cancellations,
    CAST(sum(revenue) AS DECIMAL(18, 2)) AS revenue
FROM order_revenue
GROUP BY minute_utc
ORDER BY minute
