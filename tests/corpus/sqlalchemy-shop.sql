-- SQLAlchemy 2.0 (psycopg2) for customers(id, name, active), orders(id, customer_id, status,
-- total, created_at), order_items(id, order_id, sku, qty, price). Expectations are for the
-- heuristic oracle.

-- name: sa-join-distinct
-- orm: select(Order).join(Order.items).where(Item.sku.in_(['A'])).distinct()
-- expect: distinct-over-fanout-join
SELECT DISTINCT orders.id, orders.customer_id, orders.status FROM orders JOIN order_items ON orders.id = order_items.order_id WHERE order_items.sku IN ('A');

-- name: sa-any-exists
-- orm: select(Order).where(Order.items.any(Item.qty > 5))
-- expect: none
SELECT orders.id, orders.status FROM orders WHERE EXISTS (SELECT 1 FROM order_items WHERE orders.id = order_items.order_id AND order_items.qty > 5);

-- name: sa-selectinload
-- orm: select(Order).options(selectinload(Order.items))  (second query)
-- expect: none
SELECT order_items.order_id AS order_items_order_id, order_items.id AS order_items_id, order_items.sku AS order_items_sku FROM order_items WHERE order_items.order_id IN (1, 2, 3);

-- name: sa-joinedload-many-to-one
-- orm: select(Item).options(joinedload(Item.order)).where(Item.sku == 'A')
-- expect: none
SELECT order_items.id, order_items.sku, orders_1.id AS id_1, orders_1.status FROM order_items LEFT OUTER JOIN orders AS orders_1 ON orders_1.id = order_items.order_id WHERE order_items.sku = 'A';

-- name: sa-joinedload-collection-limit
-- orm: select(Order).options(joinedload(Order.items)).order_by(Order.id).limit(10)
-- expect: none
SELECT anon_1.orders_id, anon_1.orders_status, order_items_1.id AS id_1, order_items_1.sku FROM (SELECT orders.id AS orders_id, orders.status AS orders_status FROM orders ORDER BY orders.id LIMIT 10) AS anon_1 LEFT OUTER JOIN order_items AS order_items_1 ON anon_1.orders_id = order_items_1.order_id ORDER BY anon_1.orders_id;

-- name: sa-count-distinct-join
-- orm: select(func.count(distinct(Order.customer_id))).join(Order.items).where(Item.sku == 'B')
-- expect: count-distinct-fanout
SELECT count(DISTINCT orders.customer_id) AS count_1 FROM orders JOIN order_items ON orders.id = order_items.order_id WHERE order_items.sku = 'B';

-- name: sa-count-distinct-no-join
-- orm: select(func.count(distinct(Order.customer_id)))
-- expect: none
SELECT count(DISTINCT orders.customer_id) AS count_1 FROM orders;

-- name: sa-query-count-distinct
-- orm: session.query(Order).join(Order.items).filter(Item.qty > 1).distinct().count()
-- expect: distinct-over-fanout-join
SELECT count(*) AS count_1 FROM (SELECT DISTINCT orders.id AS orders_id, orders.status AS orders_status FROM orders JOIN order_items ON orders.id = order_items.order_id WHERE order_items.qty > 1) AS anon_1;

-- name: sa-func-random
-- orm: select(Customer.id).order_by(func.random()).limit(1)
-- expect: order-by-random
SELECT customers.id FROM customers ORDER BY random() LIMIT 1;

-- name: sa-not-in
-- orm: select(Customer.id).where(~Customer.id.in_(select(Order.customer_id)))
-- expect: not-in-subquery
SELECT customers.id FROM customers WHERE (customers.id NOT IN (SELECT orders.customer_id FROM orders));

-- name: sa-update-all
-- orm: update(Customer).values(active=False)
-- expect: update-or-delete-without-where
UPDATE customers SET active=false;

-- name: sa-delete-where
-- orm: delete(Item).where(Item.order_id == 5)
-- expect: none
DELETE FROM order_items WHERE order_items.order_id = 5;

-- name: sa-ilike-contains
-- orm: select(Customer.id).where(Customer.name.ilike('%smith%'))
-- expect: leading-wildcard-like
SELECT customers.id FROM customers WHERE customers.name ILIKE '%smith%';

-- name: sa-ilike-prefix
-- orm: select(Customer.id).where(Customer.name.ilike('smith%'))
-- expect: none
SELECT customers.id FROM customers WHERE customers.name ILIKE 'smith%';

-- name: sa-offset-deep
-- orm: select(Order).order_by(Order.id).limit(50).offset(5000)
-- expect: offset-pagination-deep
SELECT orders.id, orders.status FROM orders ORDER BY orders.id LIMIT 50 OFFSET 5000;

-- name: sa-implicit-cartesian
-- orm: select(Customer.name, Order.id).where(Order.status == 'open')   (forgot the join)
-- expect: cartesian-join
SELECT customers.name, orders.id FROM customers, orders WHERE orders.status = 'open';

-- name: sa-implicit-join
-- orm: select(Customer.name, Order.id).where(Customer.id == Order.customer_id)
-- expect: none
SELECT customers.name, orders.id FROM customers, orders WHERE customers.id = orders.customer_id;

-- name: sa-implicit-join-distinct
-- orm: select(Customer).where(Customer.id == Order.customer_id, Order.total > 100).distinct()
-- expect: distinct-over-fanout-join
SELECT DISTINCT customers.id, customers.name FROM customers, orders WHERE customers.id = orders.customer_id AND orders.total > 100;

-- name: sa-insert-many
-- orm: session.execute(insert(Item), [{...}, {...}])  (insertmanyvalues)
-- expect: none
INSERT INTO order_items (order_id, sku, qty) VALUES (1, 'A', 2), (1, 'B', 1) RETURNING order_items.id;

-- name: sa-upsert
-- orm: insert(Item).values(...).on_conflict_do_update(index_elements=['id'], set_={'qty': ...})
-- expect: none
INSERT INTO order_items (id, order_id, sku, qty) VALUES (7, 1, 'A', 3) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty;

-- name: sa-cte-distinct-fanout
-- orm: recent = select(Order.id).where(Order.created_at > ...).cte('recent'); select(recent.c.id).join(Item, ...).distinct()
-- expect: distinct-over-fanout-join
WITH recent AS (SELECT orders.id AS id FROM orders WHERE orders.created_at > '2025-01-01') SELECT DISTINCT recent.id FROM recent JOIN order_items ON order_items.order_id = recent.id;

-- name: sa-window
-- orm: select(Order.id, func.row_number().over(partition_by=Order.customer_id, order_by=Order.created_at.desc())).limit(100)
-- expect: none
SELECT orders.id, row_number() OVER (PARTITION BY orders.customer_id ORDER BY orders.created_at DESC) AS anon_1 FROM orders LIMIT 100;

-- name: sa-group-by-having
-- orm: select(Order.customer_id, func.sum(Order.total)).group_by(Order.customer_id).having(func.sum(Order.total) > 1000)
-- expect: none
SELECT orders.customer_id, sum(orders.total) AS sum_1 FROM orders GROUP BY orders.customer_id HAVING sum(orders.total) > 1000;
