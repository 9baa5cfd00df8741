-- gold.top_products_by_country: the 10 products with the most revenue in each country.
-- tide: refresh = on-change
--
-- Definitions (the same in every gold report):
--   counted order  an order whose status is not 'draft' (a draft is a basket, not an order yet).
--   sale           a counted order in status 'placed', 'paid' or 'shipped'.
--   cancellation   a counted order in status 'cancelled': the data set's cancellation documents
--                  ('C' + six digits, negative quantities) and orders the app cancelled (positive quantities).
--   line amount    quantity * unit_price, with the unit price stored on the line at order time
--                  (a later product price change does not rewrite past revenue).
--   revenue        the sum of the line amounts of sales, plus the negative lines (returns, credits) of
--                  cancellations. The positive lines of a cancelled order (never delivered) and every
--                  line of a draft count zero:
--                    sum(quantity * unit_price) over lines WHERE status IN ('placed', 'paid', 'shipped')
--                                                        OR (status = 'cancelled' AND quantity < 0)
--   time           every boundary is taken in UTC: ordered_at AT TIME ZONE 'UTC'.
--
-- country is the customer's current country, NULL for orders without a customer (as in
-- gold.revenue_by_country). A product's revenue in a country is the revenue of its lines on orders
-- of that country; units is the sum of the quantities of the same lines, the ones that count for
-- revenue (returns subtract; lines of drafts and undelivered cancelled orders are not in it).
-- Ranking: revenue descending, then product_no ascending in byte order (C collation) to break ties;
-- only products with revenue > 0 are ranked; the first 10 per country are kept.
--   country        the country, or NULL
--   product_rank   1 .. 10 within the country
--   product_no     the product
--   product_name   the product's current name
--   units          BIGINT
--   revenue        DECIMAL(18,2)
-- Key: country, product_rank.
WITH product_revenue AS (
    SELECT
        c.country,
        i.product_no,
        CAST(sum(i.quantity) AS BIGINT) AS units,
        CAST(sum(i.quantity * i.unit_price) AS DECIMAL(18, 2)) AS revenue
    FROM silver_orders o
    JOIN silver_order_items i ON i.order_id = o.id
    LEFT JOIN silver_customers c ON c.id = o.customer_id
    WHERE o.status IN ('placed', 'paid', 'shipped') OR (o.status = 'cancelled' AND i.quantity < 0)
    GROUP BY c.country, i.product_no
),
ranked AS (
    SELECT
        country,
        row_number() OVER (PARTITION BY country ORDER BY revenue DESC, product_no) AS product_rank,
        product_no,
        units,
        revenue
    FROM product_revenue
    WHERE revenue > 0
)
SELECT r.country, r.product_rank, r.product_no, p.name AS product_name, r.units, r.revenue
FROM ranked r
JOIN silver_products p ON p.product_no = r.product_no
WHERE r.product_rank <= 10
ORDER BY r.country, r.product_rank
