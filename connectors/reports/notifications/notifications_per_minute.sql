-- gold.notifications_per_minute: notifications per customer per minute, with the last update time (the dashboard's panel).
-- tide: refresh = every 5s
-- tide: incremental by minute lookback 10m
--
-- One row per customer and UTC minute of event_datetime with at least one notification.
--   minute            the minute of event_datetime (UTC), TIMESTAMP
--   customer_id       the customer
--   customer_name     the customer's name (as the events carry it)
--   notifications     notifications sent to the customer in that minute
--   last_update       the newest event_datetime of those notifications
--   last_ingested_at  when the newest of them reached the lake (bronze's _ingested_at)
-- Key: minute, customer_id.
-- Incremental: each build recomputes the minutes from 10 minutes before the newest one, from
-- gold.notifications_per_minute_channel (built just before it in the same pass), which does the same from bronze.
SELECT
    minute,
    customer_id,
    any_value(customer_name) AS customer_name,
    CAST(sum(notifications) AS BIGINT) AS notifications,
    max(last_at) AS last_update,
    max(last_ingested_at) AS last_ingested_at
FROM gold_notifications_per_minute_channel
WHERE minute >= {{since}}
GROUP BY minute, customer_id
