-- gold.order_attributes: the orders' free-form jsonb attributes, one column per key, whatever keys appear.
-- tide: refresh = on-change
--
-- "Latest" means: per order, its current attributes. Silver holds each order's current row, so every
-- value is the latest one written for that order and key; a key removed from an order is NULL there.
-- One row per order (every status, drafts included).
--   order_id        the order
--   transaction_no  the order's transaction number
--   updated_at      when the order (its status or attributes) last changed, TIMESTAMPTZ UTC
--   <key> ...       one VARCHAR column per key found in any order's attributes (order_attributes.keys.sql),
--                   named exactly as the key (quoted), in ascending code-unit order of the keys. The value
--                   is the key's value as text: strings without quotes, true/false, NULL when the order
--                   lacks the key or holds JSON null. Numbers and nested objects/arrays are printed by
--                   each engine's JSON reader: DuckDB reads numbers as doubles (1.50 → '1.5') and prints
--                   nested values compactly, Postgres keeps jsonb's text. The app writes only strings and
--                   booleans; the equivalence test covers those.
-- Attributes that are not a JSON object have no keys: all key columns are NULL for that order.
-- Key: order_id.
--
-- The placeholder line below is replaced by one line per key (src/reports/gold-reports.ts, attributeColumns):
--     , max(a.value_text) FILTER (WHERE a.key = 'the key') AS "the key"
-- with the key quoted as a string literal and as an identifier.
SELECT
    o.id AS order_id,
    o.transaction_no,
    o.updated_at
    {{attribute_columns}}
FROM silver_orders o
LEFT JOIN LATERAL (
    SELECT key, json_extract_string(value, '$') AS value_text
    FROM json_each(CASE WHEN json_type(o.attributes) = 'OBJECT' THEN o.attributes ELSE '{}' END)
) a ON true
GROUP BY o.id, o.transaction_no, o.updated_at
ORDER BY order_id
