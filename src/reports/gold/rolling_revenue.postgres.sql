-- Postgres twin of rolling_revenue.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header. Postgres' / on integers truncates like DuckDB's //.
WITH order_month AS (
    SELECT
        o.id,
        o.customer_id,
        o.status,
        CAST(extract(year FROM o.ordered_at AT TIME ZONE 'UTC') AS INTEGER) * 12
            + CAST(extract(month FROM o.ordered_at AT TIME ZONE 'UTC') AS INTEGER) - 1 AS month_no
    FROM orders o
    WHERE o.status <> 'draft'
),
reference_month AS (
    SELECT DISTINCT month_no FROM order_month
),
customer_month AS (
    SELECT
        m.customer_id,
        m.month_no,
        CAST(
            coalesce(
                sum(i.quantity * i.unit_price)
                    FILTER (WHERE m.status IN ('placed', 'paid', 'shipped') OR (m.status = 'cancelled' AND i.quantity < 0)),
                0
            ) * 100 AS BIGINT
        ) AS cents
    FROM order_month m
    LEFT JOIN order_items i ON i.order_id = m.id
    WHERE m.customer_id IS NOT NULL
    GROUP BY m.customer_id, m.month_no
),
first_month AS (
    SELECT customer_id, min(month_no) AS first_month_no FROM customer_month GROUP BY customer_id
),
window_total AS (
    SELECT
        f.customer_id,
        r.month_no AS reference_month_no,
        f.first_month_no,
        CAST(coalesce(sum(cm.cents) FILTER (WHERE cm.month_no >= r.month_no - 3), 0) AS BIGINT) AS cents_3m,
        CAST(coalesce(sum(cm.cents), 0) AS BIGINT) AS cents_6m
    FROM first_month f
    JOIN reference_month r ON r.month_no > f.first_month_no
    LEFT JOIN customer_month cm
        ON cm.customer_id = f.customer_id AND cm.month_no >= r.month_no - 6 AND cm.month_no < r.month_no
    GROUP BY f.customer_id, r.month_no, f.first_month_no
),
rounded AS (
    SELECT
        customer_id,
        reference_month_no,
        first_month_no,
        CASE WHEN cents_3m < 0 THEN -((-cents_3m * 2 + 3) / 6) ELSE (cents_3m * 2 + 3) / 6 END AS avg_cents_3m,
        CASE WHEN cents_6m < 0 THEN -((-cents_6m * 2 + 6) / 12) ELSE (cents_6m * 2 + 6) / 12 END AS avg_cents_6m
    FROM window_total
)
SELECT
    customer_id,
    make_date(reference_month_no / 12, reference_month_no % 12 + 1, 1) AS reference_month,
    make_date(first_month_no / 12, first_month_no % 12 + 1, 1) AS first_order_month,
    CAST(
        CASE WHEN first_month_no <= reference_month_no - 3 THEN CAST(avg_cents_3m AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) END
        AS DECIMAL(18, 2)
    ) AS avg_revenue_3m,
    CAST(
        CASE WHEN first_month_no <= reference_month_no - 6 THEN CAST(avg_cents_6m AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) END
        AS DECIMAL(18, 2)
    ) AS avg_revenue_6m
FROM rounded
ORDER BY customer_id, reference_month
