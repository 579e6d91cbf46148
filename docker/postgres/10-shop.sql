-- The demo shop of `pgshape demo` (Django's tables for Order and OrderItem), run once by the
-- postgres image's entrypoint on a fresh volume (docker/compose.yaml mounts this directory as
-- /docker-entrypoint-initdb.d). `psql -v orders=N -f 10-shop.sql` makes a smaller shop (the
-- tests load it that way).
\set ON_ERROR_STOP on
\if :{?orders}
\else
  \set orders 50000
\endif

-- The server loads the library (shared_preload_libraries in compose.yaml); `pgshape check
-- --pg-stat-statements` reads the view.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

CREATE TABLE shop_order (
    id bigserial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL);
CREATE TABLE shop_orderitem (
    id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order(id),
    sku text NOT NULL, qty int NOT NULL, price numeric(10, 2) NOT NULL);

-- Ten items per order over 40 SKUs: a SKU filter joins each order to several of its items,
-- the fan-out the incident's DISTINCT sorted away again.
INSERT INTO shop_order(customer_id, status, created_at)
  SELECT 1 + g % 5000, (ARRAY['new','paid','shipped'])[1 + g % 3], now() - g * interval '1 minute'
  FROM generate_series(1, :orders) g;
INSERT INTO shop_orderitem(order_id, sku, qty, price)
  SELECT 1 + g % :orders, 'SKU-' || (g % 40), 1 + g % 4, (g % 100) + 0.99
  FROM generate_series(1, :orders * 10) g;
CREATE INDEX ON shop_orderitem(order_id);
CREATE INDEX ON shop_orderitem(sku);
CREATE INDEX ON shop_order(created_at);
CREATE INDEX ON shop_order(customer_id);
ANALYZE;
