-- Hardening: bounded work for the runtime role, the registry private to each tenant, a
-- race-free name vocabulary, and the relay's list of organizations with pending events.

-- No statement, lock wait or idle transaction of the runtime role holds the database for
-- long. Jobs that need longer raise statement_timeout for their own transaction. Set for this
-- database only (several databases of one cluster each keep their own).
DO $$
DECLARE
    setting text[];
BEGIN
    FOREACH setting SLICE 1 IN ARRAY ARRAY[
        ['statement_timeout', '5s'],
        ['lock_timeout', '3s'],
        ['idle_in_transaction_session_timeout', '15s'],
        ['temp_file_limit', '256MB']]
    LOOP
        BEGIN
            EXECUTE format('ALTER ROLE customer_app IN DATABASE %I SET %I = %L',
                           current_database(), setting[1], setting[2]);
        EXCEPTION
            -- temp_file_limit is a superuser setting a managed service's admin may not set.
            WHEN insufficient_privilege THEN
                RAISE WARNING '% for customer_app not set: set it in the parameter group', setting[1];
        END;
    END LOOP;
END
$$;

-- A tenant sees its own registry row only; jobs (no tenant set) still list every organization.
DROP POLICY organizations_listing ON organizations;
CREATE POLICY organizations_listing ON organizations FOR SELECT
    USING (organization_id = current_organization_id() OR current_organization_id() IS NULL);

-- The vocabulary without a lost word: an insert locks the words it relies on (without
-- rewriting them), and the prune locks the words before it checks, in a later statement, that
-- no customer uses them. Both take the words in order, so they cannot deadlock.
CREATE OR REPLACE FUNCTION remember_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO name_words (organization_id, word)
    SELECT DISTINCT changed.organization_id, word
    FROM changed, unnest(tsvector_to_array(changed.search_words)) AS word
    ORDER BY 1, 2
    ON CONFLICT (organization_id, word) DO UPDATE SET word = EXCLUDED.word WHERE false;
    RETURN NULL;
END
$$;

-- The organizations with pending events, for the relay: ids only, read by a role that may
-- list the outbox's pending organizations and nothing else, and answered only outside a
-- tenant transaction. One skip scan of outbox_pending_idx instead of a query per tenant.
DO $$
BEGIN
    CREATE ROLE customer_outbox_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO customer_outbox_reader;
GRANT SELECT (organization_id, published_at) ON outbox TO customer_outbox_reader;
GRANT EXECUTE ON FUNCTION current_organization_id() TO customer_outbox_reader;
CREATE POLICY outbox_pending_listing ON outbox FOR SELECT TO customer_outbox_reader USING (true);

CREATE FUNCTION organizations_with_pending_events() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    WITH RECURSIVE pending(organization_id) AS (
        (SELECT organization_id FROM outbox WHERE published_at IS NULL ORDER BY organization_id LIMIT 1)
        UNION ALL
        SELECT (SELECT o.organization_id FROM outbox o
                WHERE o.published_at IS NULL AND o.organization_id > p.organization_id
                ORDER BY o.organization_id LIMIT 1)
        FROM pending p WHERE p.organization_id IS NOT NULL
    )
    SELECT organization_id FROM pending
    WHERE organization_id IS NOT NULL AND current_organization_id() IS NULL
    $$;
ALTER FUNCTION organizations_with_pending_events() OWNER TO customer_outbox_reader;
REVOKE ALL ON FUNCTION organizations_with_pending_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION organizations_with_pending_events() TO customer_app;
