-- gold.notifications_per_minute_channel: notifications per customer, channel and UTC minute: the one report
-- that scans bronze; the panel and the detailed report are built from it.
-- tide: refresh = every 5s
-- tide: incremental by minute lookback 10m
--
-- One row per UTC minute of event_datetime, customer and channel with at least one notification.
--   minute            the minute of event_datetime (UTC), TIMESTAMP
--   customer_id       the customer
--   channel           sms, email, push or whatsapp
--   customer_name     the customer's name (as the events carry it)
--   notifications     notifications sent to the customer on that channel in that minute
--   first_at          the oldest event_datetime of those notifications
--   last_at           the newest event_datetime of those notifications
--   last_ingested_at  when the newest of them reached the lake (bronze's _ingested_at)
-- Key: minute, customer_id, channel.
-- Incremental: each build recomputes the minutes from 10 minutes before the newest one (the generator sends
-- late notifications at most 5 minutes late); a notification later than that is counted at the next full
-- build (`tide lake report run … --full`). A build reads only the bronze files with events in those minutes.
-- Built once per minute of data, ~800 rows a minute for 200 customers, instead of ~720,000 events a minute at
-- 12,000 a second: the reports below aggregate these rows, not bronze.
SELECT
    date_trunc('minute', event_datetime) AS minute,
    customer_id,
    channel,
    any_value(customer_name) AS customer_name,
    count(*) AS notifications,
    min(event_datetime) AS first_at,
    max(event_datetime) AS last_at,
    max(_ingested_at) AS last_ingested_at
FROM bronze_notifications
WHERE event_datetime >= {{since}}
GROUP BY ALL
