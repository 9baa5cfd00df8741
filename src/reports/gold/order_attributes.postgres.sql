-- Postgres twin of order_attributes.duckdb.sql over the source tables, for the equivalence test.
-- Same definitions and columns; see that file's header. jsonb_each_text gives strings unquoted,
-- true/false, and NULL for JSON null, like DuckDB's json_extract_string.
SELECT
    o.id AS order_id,
    o.transaction_no,
    o.updated_at
    {{attribute_columns}}
FROM orders o
LEFT JOIN LATERAL (
    SELECT key, value AS value_text
    FROM jsonb_each_text(CASE WHEN jsonb_typeof(o.attributes) = 'object' THEN o.attributes ELSE '{}' END)
) a ON true
GROUP BY o.id, o.transaction_no, o.updated_at
ORDER BY order_id
