-- Demo data: a table with a single-column key (sparse bigint ids) of
-- :orders rows, and one with a composite text key of :inventory rows.
-- Re-running replaces both.
\set ON_ERROR_STOP on
DROP TABLE IF EXISTS public.orders, public.inventory;

CREATE TABLE public.orders (
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    status      text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    note        text,
    created_at  timestamptz NOT NULL,
    attrs       jsonb
);
INSERT INTO public.orders
SELECT g * 10 + (g % 7),
       ((g::bigint * 7919) % 100000)::int,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4],
       round(((g * 31) % 100000) / 100.0 + 0.99, 2),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'order ' || g END,
       timestamptz '2020-01-01 00:00:00+00' + g * interval '37 seconds',
       jsonb_build_object('channel', CASE WHEN g % 2 = 0 THEN 'web' ELSE 'app' END,
                          'items', g % 9 + 1, 'gift', g % 11 = 0)
FROM generate_series(1, :orders) AS g;

CREATE TABLE public.inventory (
    tenant     text NOT NULL,
    sku        text NOT NULL,
    qty        integer NOT NULL,
    price      numeric(10, 2),
    updated_at timestamp NOT NULL,
    PRIMARY KEY (tenant, sku)
);
INSERT INTO public.inventory
SELECT 'tenant-' || lpad((g % 50)::text, 2, '0'),
       'SKU-' || lpad(g::text, 8, '0'),
       g % 1000,
       CASE WHEN g % 13 = 0 THEN NULL ELSE round((g % 5000) / 7.0, 2) END,
       timestamp '2024-06-01 12:00:00' + g * interval '1 second'
FROM generate_series(1, :inventory) AS g;

ANALYZE public.orders;
ANALYZE public.inventory;
