-- gold.rolling_revenue: each customer's average monthly revenue over the 3 and the 6 months before a
-- reference month.
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
-- Months are UTC calendar months; M - k is the k-th month before M.
--   reference month  every calendar month in which at least one counted order exists (shop-wide).
--   rows             one per customer and reference month M, for customers whose first counted order
--                    is before M (a customer with no history before M has nothing to average: no row).
--                    Orders without a customer are in no row, but they still make their month a reference month.
--   window k         the k whole months M - k .. M - 1; M itself is not in the window.
--   average          the customer's revenue in the window divided by k; months without orders count as 0.
--   enough history   the customer's first counted order falls in month M - k or earlier, i.e. the customer
--                    existed for the whole window. Otherwise the average is NULL.
--   rounding         to 2 decimals, half away from zero, computed in integer cents:
--                    avg_cents = sign(c) * floor((2 * |c| + k) / (2 * k)) for a window total of c cents.
--                    (Hand-written rather than round(sum / k, 2): DuckDB divides DECIMAL by a number in
--                    DOUBLE, which can land below a .5 tie: 1.65 / 6 = 0.275 would give 0.27. Integer cents round
--                    exactly, and the same in Postgres.)
-- Columns: customer_id, reference_month (DATE, first day), first_order_month (DATE, first day of the month
-- of the first counted order), avg_revenue_3m and avg_revenue_6m (DECIMAL(18,2) or NULL).
-- Key: customer_id, reference_month.
WITH order_month AS (
    SELECT
        o.id,
        o.customer_id,
        o.status,
        CAST(extract(year FROM o.ordered_at AT TIME ZONE 'UTC') AS INTEGER) * 12
            + CAST(extract(month FROM o.ordered_at AT TIME ZONE 'UTC') AS INTEGER) - 1 AS month_no
    FROM silver_orders o
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
    LEFT JOIN silver_order_items i ON i.order_id = m.id
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
        CASE WHEN cents_3m < 0 THEN -((-cents_3m * 2 + 3) // 6) ELSE (cents_3m * 2 + 3) // 6 END AS avg_cents_3m,
        CASE WHEN cents_6m < 0 THEN -((-cents_6m * 2 + 6) // 12) ELSE (cents_6m * 2 + 6) // 12 END AS avg_cents_6m
    FROM window_total
)
SELECT
    customer_id,
    make_date(reference_month_no // 12, reference_month_no % 12 + 1, 1) AS reference_month,
    make_date(first_month_no // 12, first_month_no % 12 + 1, 1) AS first_order_month,
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
