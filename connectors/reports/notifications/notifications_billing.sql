-- gold.notifications_billing: the daily bill per customer: notifications sent times the price per notification.
-- tide: refresh = daily 00:15 UTC
--
-- The price is set here: change price_per_notification (or make it a CASE on channel) and the next build
-- bills every day at the new price. It runs at 00:15 UTC, after the late notifications of the day before
-- have arrived (the example's generator sends them at most 5 minutes late); `tide lake report run
-- connectors/notifications-lake.json notifications_billing` bills now.
--
-- One row per customer and UTC day with at least one notification, read from the detailed report.
--   customer_id             the customer
--   customer_name           the customer's name
--   day                     the UTC calendar day (DATE)
--   notifications           notifications sent that day, every channel
--   price_per_notification  DECIMAL(10,4)
--   amount                  notifications * price_per_notification, DECIMAL(18,4)
-- Key: customer_id, day.
WITH price AS (
    SELECT CAST(0.0025 AS DECIMAL(10, 4)) AS price_per_notification
)
SELECT
    d.customer_id,
    any_value(d.customer_name) AS customer_name,
    d.day,
    CAST(sum(d.notifications) AS BIGINT) AS notifications,
    any_value(p.price_per_notification) AS price_per_notification,
    CAST(sum(d.notifications) * any_value(p.price_per_notification) AS DECIMAL(18, 4)) AS amount
FROM gold_notifications_by_customer d
CROSS JOIN price p
GROUP BY d.customer_id, d.day
