-- Checkout: a new order and its items in one transaction (transaction.atomic()), then the
-- payment marks it paid.
\set c random(1, 5000)
\set s random(0, 39)
\set t random(1000000, 9999999)
BEGIN;
INSERT INTO "shop_order" ("customer_id", "status", "created_at") VALUES (:c, 'new', now()) RETURNING "shop_order"."id" /*controller='CheckoutView',route='checkout/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/ \gset
INSERT INTO "shop_orderitem" ("order_id", "sku", "qty", "price") VALUES (:id, 'SKU-:s', 1, 19.99), (:id, 'SKU-3', 2, 4.50) /*controller='CheckoutView',route='checkout/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
COMMIT;
UPDATE "shop_order" SET "status" = 'paid' WHERE "shop_order"."id" = :id /*controller='CheckoutView',route='checkout/',traceparent='00-4bf92f3577b34da6a3ce929d0:t-00f067aa0:t-01'*/;
