-- gold.notifications_by_customer: the detailed report per customer: notifications per UTC day and channel.
-- tide: refresh = every 60s
-- tide: incremental by day lookback 1d
--
-- One row per customer, UTC day of event_datetime and channel with at least one notification. Export one
-- customer's with `tide lake export gold.notifications_by_customer --where "customer_id = 42"`.
--   customer_id     the customer
--   customer_name   the customer's name
--   day             the UTC calendar day of event_datetime (DATE)
--   channel         sms, email, push or whatsapp
--   notifications   notifications sent that day on that channel
--   first_at        the earliest event_datetime of those
--   last_at         the newest event_datetime of those
-- Key: customer_id, day, channel.
-- Incremental: each build recomputes the days from the day before the newest one. It reads the per-minute
-- rows of gold.notifications_per_minute_channel (~1.2 million a day for 200 customers), not bronze (the
-- day's 100 million events), so a build stays cheap at any hour of the day.
SELECT
    customer_id,
    any_value(customer_name) AS customer_name,
    CAST(minute AT TIME ZONE 'UTC' AS DATE) AS day,
    channel,
    CAST(sum(notifications) AS BIGINT) AS notifications,
    min(first_at) AS first_at,
    max(last_at) AS last_at
FROM gold_notifications_per_minute_channel
WHERE minute >= {{since}}
GROUP BY customer_id, day, channel
