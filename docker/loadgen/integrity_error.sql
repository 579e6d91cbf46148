-- What an application's IntegrityError looks like: an item for an order that does not exist
-- (SQLSTATE 23503), so the dashboard's error panel has something to show.
INSERT INTO "shop_orderitem" ("order_id", "sku", "qty", "price") VALUES (0, 'SKU-1', 1, 9.99) /*controller='CheckoutView',route='checkout/'*/;
