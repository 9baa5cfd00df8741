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
-- Incremental: each build recomputes the minutes from 10 minutes before the newest one; a notification
-- later than that is counted at the next full build (`tide lake report run … --full`).
SELECT
    date_trunc('minute', event_datetime) AS minute,
    customer_id,
    any_value(customer_name) AS customer_name,
    count(*) AS notifications,
    max(event_datetime) AS last_update,
    max(_ingested_at) AS last_ingested_at
FROM bronze_notifications
WHERE event_datetime >= {{since}}
GROUP BY ALL
