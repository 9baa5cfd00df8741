-- Postgres twin of top_products_by_country.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header. COLLATE "C" makes ties break in DuckDB's byte order.
WITH product_revenue AS (
    SELECT
        c.country,
        i.product_no,
        CAST(sum(i.quantity) AS BIGINT) AS units,
        CAST(sum(i.quantity * i.unit_price) AS DECIMAL(18, 2)) AS revenue
    FROM orders o
    JOIN order_items i ON i.order_id = o.id
    LEFT JOIN customers c ON c.id = o.customer_id
    WHERE o.status IN ('placed', 'paid', 'shipped') OR (o.status = 'cancelled' AND i.quantity < 0)
    GROUP BY c.country, i.product_no
),
ranked AS (
    SELECT
        country,
        row_number() OVER (PARTITION BY country ORDER BY revenue DESC, product_no COLLATE "C") AS product_rank,
        product_no,
        units,
        revenue
    FROM product_revenue
    WHERE revenue > 0
)
SELECT r.country, r.product_rank, r.product_no, p.name AS product_name, r.units, r.revenue
FROM ranked r
JOIN products p ON p.product_no = r.product_no
WHERE r.product_rank <= 10
ORDER BY r.country COLLATE "C", r.product_rank
