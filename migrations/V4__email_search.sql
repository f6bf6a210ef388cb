-- Email search that forced row-level security lets use an index, and name prefixes read from
-- the index alone. Under RLS only a leakproof
-- qual on a plain column can be an index condition: `lower(email) ~>=~ $1` is a filter
-- (lower() is not leakproof), and so are LIKE and every trigram operator.

-- The email in lower case, as a column: prefixes become B-tree ranges.
ALTER TABLE customers ADD COLUMN email_search text GENERATED ALWAYS AS (lower(email)) STORED;
DROP INDEX customers_email_prefix;
DROP INDEX customers_email_trgm;
CREATE INDEX customers_email_search_prefix ON customers (organization_id, email_search text_pattern_ops)
    INCLUDE (customer_id);

-- Whole-name prefixes answered from the index alone (id and name), without reading the rows.
DROP INDEX customers_search_name_prefix;
CREATE INDEX customers_search_name_prefix ON customers (organization_id, search_name text_pattern_ops)
    INCLUDE (customer_id);

-- Suffixes of each email, so a fragment from the middle of an address is a B-tree range:
-- "ar.mendo" is a prefix of the suffix "ar.mendoza7@gmail.com". Every suffix that starts in the
-- local part after its first character, at the '@', or at a label of the domain ("gmail.com",
-- "com"); the suffix at the first character is the email itself (customers_email_search_prefix).
CREATE TABLE email_suffixes (
    organization_id uuid NOT NULL,
    suffix          text NOT NULL,
    customer_id     uuid NOT NULL
);
CREATE INDEX email_suffixes_lookup ON email_suffixes (organization_id, suffix text_pattern_ops, customer_id);

ALTER TABLE email_suffixes ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_suffixes FORCE ROW LEVEL SECURITY;
CREATE POLICY email_suffixes_organization_isolation ON email_suffixes
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

-- The suffixes of one email address (already in lower case).
CREATE FUNCTION email_suffixes_of(email text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT substr(email, start)
    FROM generate_series(2, length(email) - 2) AS start
    WHERE start <= strpos(email, '@')
       OR substr(email, start - 1, 1) IN ('@', '.') AND start > strpos(email, '@')
$$;

-- Keeps email_suffixes in step with customers, once per statement.
CREATE FUNCTION forget_email_suffixes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM email_suffixes s
    USING gone
    WHERE gone.email_search IS NOT NULL
      AND s.organization_id = gone.organization_id
      AND s.suffix IN (SELECT email_suffixes_of(gone.email_search))
      AND s.customer_id = gone.customer_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION remember_email_suffixes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO email_suffixes (organization_id, suffix, customer_id)
    SELECT added.organization_id, suffix, added.customer_id
    FROM added, email_suffixes_of(added.email_search) AS suffix
    WHERE added.email_search IS NOT NULL;
    RETURN NULL;
END
$$;

-- An update changes the suffixes of the rows whose email changed: forget the old, remember
-- the new.
CREATE FUNCTION replace_email_suffixes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM email_suffixes s
    USING old_rows o JOIN new_rows n ON n.customer_id = o.customer_id
    WHERE o.email_search IS DISTINCT FROM n.email_search
      AND o.email_search IS NOT NULL
      AND s.organization_id = o.organization_id
      AND s.suffix IN (SELECT email_suffixes_of(o.email_search))
      AND s.customer_id = o.customer_id;
    INSERT INTO email_suffixes (organization_id, suffix, customer_id)
    SELECT n.organization_id, suffix, n.customer_id
    FROM old_rows o JOIN new_rows n ON n.customer_id = o.customer_id,
         email_suffixes_of(n.email_search) AS suffix
    WHERE o.email_search IS DISTINCT FROM n.email_search
      AND n.email_search IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_email_suffixes_on_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION remember_email_suffixes();
CREATE TRIGGER customers_email_suffixes_on_update AFTER UPDATE ON customers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION replace_email_suffixes();
CREATE TRIGGER customers_email_suffixes_on_delete AFTER DELETE ON customers
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION forget_email_suffixes();

GRANT EXECUTE ON FUNCTION email_suffixes_of(text) TO customer_app;

-- The suffixes of the customers already here. The owner is bound by forced RLS too, so it
-- lifts FORCE for this transaction's backfill only.
ALTER TABLE customers NO FORCE ROW LEVEL SECURITY;
ALTER TABLE email_suffixes NO FORCE ROW LEVEL SECURITY;
INSERT INTO email_suffixes (organization_id, suffix, customer_id)
SELECT c.organization_id, suffix, c.customer_id
FROM customers c, email_suffixes_of(c.email_search) AS suffix
WHERE c.email_search IS NOT NULL;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
ALTER TABLE email_suffixes FORCE ROW LEVEL SECURITY;
