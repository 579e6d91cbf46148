-- Django 5.2 / psycopg2 output for a blog: Post(id, author FK auth_user, title, body, status,
-- published_at), Tag(id, name), Post.tags = ManyToManyField(Tag) through blog_post_tags
-- (id, post_id, tag_id), Comment(id, post FK, author FK auth_user, body, created_at).
-- Expectations are for the heuristic oracle (no schema DSN).

-- name: blog-m2m-distinct
-- orm: Post.objects.filter(tags__name__in=['rust', 'sql']).distinct().order_by('-published_at')[:20]
-- expect: distinct-over-fanout-join
SELECT DISTINCT "blog_post"."id", "blog_post"."author_id", "blog_post"."title", "blog_post"."published_at" FROM "blog_post" INNER JOIN "blog_post_tags" ON ("blog_post"."id" = "blog_post_tags"."post_id") INNER JOIN "blog_tag" ON ("blog_post_tags"."tag_id" = "blog_tag"."id") WHERE "blog_tag"."name" IN ('rust', 'sql') ORDER BY "blog_post"."published_at" DESC LIMIT 20;

-- name: blog-m2m-no-distinct
-- orm: Post.objects.filter(tags__name__in=['rust', 'sql']).order_by('-published_at')[:20]
-- expect: none
SELECT "blog_post"."id", "blog_post"."author_id", "blog_post"."title", "blog_post"."published_at" FROM "blog_post" INNER JOIN "blog_post_tags" ON ("blog_post"."id" = "blog_post_tags"."post_id") INNER JOIN "blog_tag" ON ("blog_post_tags"."tag_id" = "blog_tag"."id") WHERE "blog_tag"."name" IN ('rust', 'sql') ORDER BY "blog_post"."published_at" DESC LIMIT 20;

-- name: blog-select-related-author
-- orm: Post.objects.select_related('author').filter(status='published')[:20]
-- expect: none
SELECT "blog_post"."id", "blog_post"."title", "auth_user"."id", "auth_user"."username" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE "blog_post"."status" = 'published' LIMIT 20;

-- name: blog-distinct-many-to-one
-- orm: Post.objects.filter(author__username__startswith='a').distinct()[:20]
-- expect: none
SELECT DISTINCT "blog_post"."id", "blog_post"."title" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE "auth_user"."username"::text LIKE 'a%' LIMIT 20;

-- name: blog-annotate-count-distinct
-- orm: Post.objects.annotate(n=Count('comments__author', distinct=True))[:21]
-- expect: count-distinct-fanout
SELECT "blog_post"."id", "blog_post"."title", COUNT(DISTINCT "blog_comment"."author_id") AS "n" FROM "blog_post" LEFT OUTER JOIN "blog_comment" ON ("blog_post"."id" = "blog_comment"."post_id") GROUP BY "blog_post"."id" LIMIT 21;

-- name: blog-annotate-count
-- orm: Post.objects.annotate(n=Count('comments'))[:21]
-- expect: none
SELECT "blog_post"."id", "blog_post"."title", COUNT("blog_comment"."id") AS "n" FROM "blog_post" LEFT OUTER JOIN "blog_comment" ON ("blog_post"."id" = "blog_comment"."post_id") GROUP BY "blog_post"."id" LIMIT 21;

-- name: blog-icontains
-- orm: Post.objects.filter(title__icontains='rust')[:21]
-- expect: leading-wildcard-like
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE UPPER("blog_post"."title"::text) LIKE UPPER('%rust%') LIMIT 21;

-- name: blog-contains
-- orm: Post.objects.filter(body__contains='unsafe')[:21]
-- expect: leading-wildcard-like
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE "blog_post"."body"::text LIKE '%unsafe%' LIMIT 21;

-- name: blog-startswith
-- orm: Post.objects.filter(title__startswith='Rust')[:21]
-- expect: none
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE "blog_post"."title"::text LIKE 'Rust%' LIMIT 21;

-- name: blog-iexact
-- orm: User.objects.get(email__iexact='ann@example.com')
-- expect: none
SELECT "auth_user"."id", "auth_user"."username", "auth_user"."email" FROM "auth_user" WHERE UPPER("auth_user"."email"::text) = UPPER('ann@example.com') LIMIT 21;

-- name: blog-paginator-deep
-- orm: Paginator(Post.objects.order_by('-published_at'), 25).page(60)
-- expect: offset-pagination-deep
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" ORDER BY "blog_post"."published_at" DESC LIMIT 25 OFFSET 1475;

-- name: blog-paginator-shallow
-- orm: Paginator(Post.objects.order_by('-published_at'), 25).page(3)
-- expect: none
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" ORDER BY "blog_post"."published_at" DESC LIMIT 25 OFFSET 50;

-- name: blog-order-random
-- orm: Post.objects.order_by('?')[:5]
-- expect: order-by-random
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" ORDER BY RANDOM() ASC LIMIT 5;

-- name: blog-exclude-subquery
-- orm: Post.objects.exclude(id__in=Comment.objects.values('post_id'))
-- expect: not-in-subquery
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE NOT ("blog_post"."id" IN (SELECT U0."post_id" AS "post_id" FROM "blog_comment" U0)) LIMIT 21;

-- name: blog-exclude-exists
-- orm: Post.objects.exclude(Exists(Comment.objects.filter(post=OuterRef('pk'))))
-- expect: none
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE NOT EXISTS(SELECT 1 AS "a" FROM "blog_comment" U0 WHERE U0."post_id" = ("blog_post"."id") LIMIT 1) LIMIT 21;

-- name: blog-update-all
-- orm: Post.objects.update(status='archived')
-- expect: update-or-delete-without-where
UPDATE "blog_post" SET "status" = 'archived';

-- name: blog-update-filtered
-- orm: Post.objects.filter(author_id=7).update(status='archived')
-- expect: none
UPDATE "blog_post" SET "status" = 'archived' WHERE "blog_post"."author_id" = 7;

-- name: blog-fast-delete-all
-- orm: Comment.objects.all().delete()   (fast path: no signals, no cascades)
-- expect: update-or-delete-without-where
DELETE FROM "blog_comment";

-- name: blog-delete-filtered
-- orm: Comment.objects.filter(post_id__in=[1, 2, 3]).delete()
-- expect: none
DELETE FROM "blog_comment" WHERE "blog_comment"."post_id" IN (1, 2, 3);

-- name: blog-prefetch-tags
-- orm: Post.objects.prefetch_related('tags')  (second query)
-- expect: none
SELECT ("blog_post_tags"."post_id") AS "_prefetch_related_val_post_id", "blog_tag"."id", "blog_tag"."name" FROM "blog_tag" INNER JOIN "blog_post_tags" ON ("blog_tag"."id" = "blog_post_tags"."tag_id") WHERE "blog_post_tags"."post_id" IN (1, 2, 3, 4, 5);

-- name: blog-insert-returning
-- orm: Post.objects.create(author_id=1, title='Hello', body='Body', status='draft')
-- expect: none
INSERT INTO "blog_post" ("author_id", "title", "body", "status", "published_at") VALUES (1, 'Hello', 'Body', 'draft', NULL) RETURNING "blog_post"."id";

-- name: blog-get-by-pk
-- orm: Post.objects.get(pk=42)
-- expect: none
SELECT "blog_post"."id", "blog_post"."author_id", "blog_post"."title", "blog_post"."body", "blog_post"."status", "blog_post"."published_at" FROM "blog_post" WHERE "blog_post"."id" = 42 LIMIT 21;

-- name: blog-exists
-- orm: Post.objects.filter(author_id=7).exists()
-- expect: none
SELECT 1 AS "a" FROM "blog_post" WHERE "blog_post"."author_id" = 7 LIMIT 1;

-- name: blog-reverse-m2m-distinct
-- orm: Tag.objects.filter(post__author_id=7).distinct()
-- expect: distinct-over-fanout-join
SELECT DISTINCT "blog_tag"."id", "blog_tag"."name" FROM "blog_tag" INNER JOIN "blog_post_tags" ON ("blog_tag"."id" = "blog_post_tags"."tag_id") INNER JOIN "blog_post" ON ("blog_post_tags"."post_id" = "blog_post"."id") WHERE "blog_post"."author_id" = 7;

-- name: blog-distinct-on-no-join
-- orm: Post.objects.order_by('author_id', '-published_at').distinct('author_id')
-- expect: none
SELECT DISTINCT ON ("blog_post"."author_id") "blog_post"."id", "blog_post"."author_id", "blog_post"."title" FROM "blog_post" ORDER BY "blog_post"."author_id" ASC, "blog_post"."published_at" DESC;

-- name: blog-distinct-on-fanout
-- orm: Post.objects.filter(comments__body__isnull=False).order_by('id', '-comments__created_at').distinct('id')
-- expect: distinct-over-fanout-join
SELECT DISTINCT ON ("blog_post"."id") "blog_post"."id", "blog_post"."title" FROM "blog_post" INNER JOIN "blog_comment" ON ("blog_post"."id" = "blog_comment"."post_id") WHERE "blog_comment"."body" IS NOT NULL ORDER BY "blog_post"."id" ASC, "blog_comment"."created_at" DESC;

-- name: blog-count
-- orm: Post.objects.filter(status='published').count()
-- expect: none
SELECT COUNT(*) AS "__count" FROM "blog_post" WHERE "blog_post"."status" = 'published';

-- name: blog-values-distinct-count
-- orm: Post.objects.filter(tags__name='rust').values('author_id').distinct().count()
-- expect: distinct-over-fanout-join
SELECT COUNT(*) FROM (SELECT DISTINCT "blog_post"."author_id" AS "col1" FROM "blog_post" INNER JOIN "blog_post_tags" ON ("blog_post"."id" = "blog_post_tags"."post_id") INNER JOIN "blog_tag" ON ("blog_post_tags"."tag_id" = "blog_tag"."id") WHERE "blog_tag"."name" = 'rust') subquery;

-- name: blog-sqlcommenter
-- orm: Post.objects.filter(status='draft')[:10] with opentelemetry-instrumentation-django
-- expect: none
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE "blog_post"."status" = 'draft' LIMIT 10 /*app_name='blog',controller='blog%3Apost-list',db_driver='django.db.backends.postgresql',framework='django%3A5.2.19',route='api/posts/'*/;
