-- gold.customer_last_update: the "panel" view beside sales per minute, one row per customer.
-- tide: refresh = on-change
--
--   customer_id    the customer
--   country        the customer's current country
--   last_order_at  ordered_at of the customer's latest counted (non-draft) order; NULL if none
--   last_update    the latest change to the customer or to any of their orders (drafts included):
--                  greatest(customers.updated_at, max(orders.updated_at)). The app stamps updated_at
--                  on every write to those rows; a change to an order's items alone does not touch
--                  orders.updated_at, and a deleted order no longer counts (silver applies deletes).
-- All times are TIMESTAMPTZ in UTC. The customer's email (masked in silver) is never output.
-- Key: customer_id.
SELECT
    c.id AS customer_id,
    c.country,
    max(o.ordered_at) FILTER (WHERE o.status <> 'draft') AS last_order_at,
    greatest(c.updated_at, coalesce(max(o.updated_at), c.updated_at)) AS last_update
FROM silver_customers c
LEFT JOIN silver_orders o ON o.customer_id = c.id
GROUP BY c.id, c.country, c.updated_at
ORDER BY customer_id
