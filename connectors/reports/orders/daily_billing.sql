-- gold.daily_billing: per customer per UTC day, the number of orders and the amount billed.
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
-- One row per customer and UTC day with at least one counted order of that customer. Orders without a
-- customer (the data set's "NA" lines) are billed to no one and left out.
--   customer_id    the customer
--   day            the UTC calendar day of ordered_at (DATE)
--   orders         number of the customer's sales that day
--   cancellations  number of the customer's cancellations that day
--   amount_billed  revenue of those orders, DECIMAL(18,2); negative when returns outweigh sales
-- Key: customer_id, day.
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
    FROM silver_orders o
    LEFT JOIN silver_order_items i ON i.order_id = o.id
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
