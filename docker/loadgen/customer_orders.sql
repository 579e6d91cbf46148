-- A customer's order history, paginated (a count, then a page).
\set c random(1, 5000)
\set t random(1000000, 9999999)
SELECT COUNT(*) AS "__count" FROM "shop_order" WHERE "shop_order"."customer_id" = :c /*controller='CustomerViewSet',route='customer/api/v1/customers/<pk>/orders/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE "shop_order"."customer_id" = :c ORDER BY "shop_order"."created_at" DESC LIMIT 20 /*controller='CustomerViewSet',route='customer/api/v1/customers/<pk>/orders/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
