-- An order's page: the order by primary key (Django's .get() asks for 21 rows), then its items.
\set id random(1, 50000)
\set t random(1000000, 9999999)
SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE "shop_order"."id" = :id LIMIT 21 /*controller='OrderViewSet',route='order/api/v1/orders/<pk>/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
SELECT "shop_orderitem"."id", "shop_orderitem"."order_id", "shop_orderitem"."sku", "shop_orderitem"."qty", "shop_orderitem"."price" FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" = :id /*controller='OrderViewSet',route='order/api/v1/orders/<pk>/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
