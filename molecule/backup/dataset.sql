-- A small data set with the shapes a Django app has: several schemas, JSON, text,
-- numeric, timestamps, indexes, a foreign key, and identifiers that need quoting.
CREATE SCHEMA IF NOT EXISTS billing;
CREATE SCHEMA IF NOT EXISTS "Audit Trail";
CREATE TABLE IF NOT EXISTS billing.customer (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE NOT NULL,
    profile jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS billing.invoice (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES billing.customer(id),
    total numeric(12, 2) NOT NULL,
    issued_at timestamptz NOT NULL,
    notes text
);
CREATE INDEX IF NOT EXISTS invoice_issued_at ON billing.invoice (issued_at);
CREATE TABLE IF NOT EXISTS "Audit Trail"."Événements ""clés""" (
    id bigserial PRIMARY KEY,
    "Action" text NOT NULL,
    payload jsonb,
    at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO billing.customer (name, email, profile)
SELECT 'Client ' || g, 'client' || g || '@example.invalid', jsonb_build_object('tier', g % 4, 'tags', jsonb_build_array('a', 'ü', '日本'))
FROM generate_series(1, 3000) g
WHERE NOT EXISTS (SELECT 1 FROM billing.customer);
INSERT INTO billing.invoice (customer_id, total, issued_at, notes)
SELECT 1 + (g % 3000), (g % 997) * 1.37, now() - (g || ' minutes')::interval, repeat('note ', g % 20)
FROM generate_series(1, 20000) g
WHERE NOT EXISTS (SELECT 1 FROM billing.invoice);
INSERT INTO "Audit Trail"."Événements ""clés""" ("Action", payload)
SELECT 'action-' || (g % 13), jsonb_build_object('n', g, 'text', 'ligne ' || g)
FROM generate_series(1, 10000) g
WHERE NOT EXISTS (SELECT 1 FROM "Audit Trail"."Événements ""clés""");
