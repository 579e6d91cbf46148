-- The incident: the back-office orders panel, Django's
-- Order.objects.filter(items__sku__in=skus).distinct().order_by('-created_at')[:25]
-- as psycopg2 sends it (constants inlined), with Django's sqlcommenter tags.
\set s1 random(0, 39)
\set s2 random(0, 39)
\set s3 random(0, 39)
\set s4 random(0, 39)
\set s5 random(0, 39)
\set s6 random(0, 39)
\set s7 random(0, 39)
\set s8 random(0, 39)
\set s9 random(0, 39)
\set s10 random(0, 39)
\set t random(1000000, 9999999)
SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('SKU-:s1', 'SKU-:s2', 'SKU-:s3', 'SKU-:s4', 'SKU-:s5', 'SKU-:s6', 'SKU-:s7', 'SKU-:s8', 'SKU-:s9', 'SKU-:s10') ORDER BY "shop_order"."created_at" DESC LIMIT 25 /*controller='OrderViewSet',route='order/api/v1/panel/orders/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
