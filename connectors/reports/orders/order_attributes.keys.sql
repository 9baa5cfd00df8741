-- The keys that appear in any order's attributes (a JSON object), for gold.order_attributes.
-- Attributes that are not a JSON object (an array or a scalar) have no keys.
SELECT DISTINCT unnest(json_keys(attributes)) AS key
FROM silver_orders
WHERE json_type(attributes) = 'OBJECT'
