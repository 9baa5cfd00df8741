-- gold.revenue_by_country: revenue, orders and ordering customers per country.
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
-- country is the customer's current country (silver customers). Orders without a customer (the data
-- set's "NA" lines, or whose customer is missing) have no country: they form the row with country NULL,
-- so the rows add up to the shop's total revenue.
--   country        the country, or NULL for orders without a customer
--   customers      number of distinct customers with at least one counted order
--   orders         number of sales
--   cancellations  number of cancellations
--   revenue        revenue of those orders, DECIMAL(18,2)
-- One row per country with at least one counted order. Key: country.
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
    FROM silver_orders o
    LEFT JOIN silver_order_items i ON i.order_id = o.id
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
LEFT JOIN silver_customers c ON c.id = r.customer_id
GROUP BY c.country
ORDER BY revenue DESC, country
