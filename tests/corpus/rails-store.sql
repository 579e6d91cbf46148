-- Rails 7.1 ActiveRecord (pg adapter, prepared_statements: false so literals are inlined).
-- Models: User has_many :posts; Post belongs_to :user, has_many :comments, has_many :taggings,
-- has_many :tags, through: :taggings; Comment belongs_to :post. Tables users, posts, comments,
-- taggings(post_id, tag_id), tags. Expectations are for the heuristic oracle.

-- name: rails-joins-distinct
-- orm: Post.joins(:comments).distinct
-- expect: distinct-over-fanout-join
SELECT DISTINCT "posts".* FROM "posts" INNER JOIN "comments" ON "comments"."post_id" = "posts"."id";

-- name: rails-eager-load-limit
-- orm: Post.includes(:comments).where(comments: { approved: true }).references(:comments).limit(10)  (id query)
-- expect: distinct-over-fanout-join
SELECT DISTINCT "posts"."id" FROM "posts" LEFT OUTER JOIN "comments" ON "comments"."post_id" = "posts"."id" WHERE "comments"."approved" = TRUE LIMIT 10;

-- name: rails-eager-load-rows
-- orm: the second query of the eager_load above
-- expect: none
SELECT "posts"."id" AS t0_r0, "posts"."title" AS t0_r1, "comments"."id" AS t1_r0, "comments"."body" AS t1_r1 FROM "posts" LEFT OUTER JOIN "comments" ON "comments"."post_id" = "posts"."id" WHERE "comments"."approved" = TRUE AND "posts"."id" IN (4, 8, 15, 16, 23, 42);

-- name: rails-where-id-in
-- orm: Post.where(id: [1, 2, 3])
-- expect: none
SELECT "posts".* FROM "posts" WHERE "posts"."id" IN (1, 2, 3);

-- name: rails-count
-- orm: Comment.where(post_id: 5).count
-- expect: none
SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = 5;

-- name: rails-count-distinct-join
-- orm: Post.joins(:comments).count('DISTINCT posts.id')
-- expect: count-distinct-fanout
SELECT COUNT(DISTINCT posts.id) FROM "posts" INNER JOIN "comments" ON "comments"."post_id" = "posts"."id";

-- name: rails-left-joins-group-count
-- orm: Post.left_joins(:comments).group(:id).count
-- expect: none
SELECT COUNT(*) AS "count_all", "posts"."id" AS "posts_id" FROM "posts" LEFT OUTER JOIN "comments" ON "comments"."post_id" = "posts"."id" GROUP BY "posts"."id";

-- name: rails-order-random
-- orm: Post.order('RANDOM()').limit(3)
-- expect: order-by-random
SELECT "posts".* FROM "posts" ORDER BY RANDOM() LIMIT 3;

-- name: rails-like-string-condition
-- orm: Post.where('title LIKE ?', '%rails%')
-- expect: leading-wildcard-like
SELECT "posts".* FROM "posts" WHERE (title LIKE '%rails%');

-- name: rails-where-not-subquery
-- orm: Post.where.not(id: Comment.select(:post_id))
-- expect: not-in-subquery
SELECT "posts".* FROM "posts" WHERE "posts"."id" NOT IN (SELECT "comments"."post_id" FROM "comments");

-- name: rails-update-all
-- orm: Post.update_all(published: false)
-- expect: update-or-delete-without-where
UPDATE "posts" SET "published" = FALSE;

-- name: rails-update-all-scoped
-- orm: Post.where(published: true).update_all(featured: false)
-- expect: none
UPDATE "posts" SET "featured" = FALSE WHERE "posts"."published" = TRUE;

-- name: rails-delete-all
-- orm: Comment.delete_all
-- expect: update-or-delete-without-where
DELETE FROM "comments";

-- name: rails-kaminari-deep-page
-- orm: Post.order(created_at: :desc).page(80).per(25)
-- expect: offset-pagination-deep
SELECT "posts".* FROM "posts" ORDER BY "posts"."created_at" DESC LIMIT 25 OFFSET 1975;

-- name: rails-find-by
-- orm: User.find_by(email: 'ann@example.com')
-- expect: none
SELECT "users".* FROM "users" WHERE "users"."email" = 'ann@example.com' LIMIT 1;

-- name: rails-create
-- orm: Post.create!(title: 'x', user_id: 3)
-- expect: none
INSERT INTO "posts" ("title", "user_id", "created_at", "updated_at") VALUES ('x', 3, '2025-09-04 11:42:00.000000', '2025-09-04 11:42:00.000000') RETURNING "id";

-- name: rails-has-many-through-distinct
-- orm: User.joins(posts: :tags).where(tags: { name: 'ruby' }).distinct
-- expect: distinct-over-fanout-join
SELECT DISTINCT "users".* FROM "users" INNER JOIN "posts" ON "posts"."user_id" = "users"."id" INNER JOIN "taggings" ON "taggings"."post_id" = "posts"."id" INNER JOIN "tags" ON "tags"."id" = "taggings"."tag_id" WHERE "tags"."name" = 'ruby';

-- name: rails-belongs-to-distinct
-- orm: Comment.joins(:post).where(posts: { published: true }).distinct
-- expect: none
SELECT DISTINCT "comments".* FROM "comments" INNER JOIN "posts" ON "posts"."id" = "comments"."post_id" WHERE "posts"."published" = TRUE;

-- name: rails-exists
-- orm: Post.where(user_id: 3).exists?
-- expect: none
SELECT 1 AS one FROM "posts" WHERE "posts"."user_id" = 3 LIMIT 1;

-- name: rails-pluck
-- orm: Post.where(user_id: 3).pluck(:title)
-- expect: none
SELECT "posts"."title" FROM "posts" WHERE "posts"."user_id" = 3;

-- name: rails-from-comma-forgotten-join
-- orm: Post.from('posts, users').where('posts.published = true')
-- expect: cartesian-join
SELECT "posts".* FROM posts, users WHERE (posts.published = true);

-- name: rails-find-each-batch
-- orm: Post.find_each(batch_size: 1000)  (a later batch)
-- expect: none
SELECT "posts".* FROM "posts" WHERE "posts"."id" > 4000 ORDER BY "posts"."id" ASC LIMIT 1000;

-- name: rails-lazy-load-lookup
-- orm: comments.each { |c| c.post }   (one query per comment)
-- expect: none (alone); n-plus-one when repeated
SELECT "posts".* FROM "posts" WHERE "posts"."id" = 17 LIMIT 1;
