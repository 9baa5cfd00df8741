-- gold.sales_per_minute: orders, cancellations and revenue per minute of order time.
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
-- One row per UTC minute that has at least one counted order:
--   minute         start of the minute (TIMESTAMPTZ, UTC)
--   orders         number of sales ordered in that minute
--   cancellations  number of cancellations ordered in that minute
--   revenue        revenue of those orders, DECIMAL(18,2)
-- Key: minute.
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
    FROM silver_orders o
    LEFT JOIN silver_order_items i ON i.order_id = o.id
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
