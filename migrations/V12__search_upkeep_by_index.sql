-- The search tables follow a customer's update only when its name or email changed, and by
-- index lookups.
--
-- The email suffix triggers matched the old suffixes with `s.suffix IN (SELECT
-- email_suffixes_of(...))`, a subplan per row that no index can use, so the planner read the
-- whole email_suffixes table and hashed it by customer. The update trigger ran for every
-- update, whatever it changed: at a million customers (15 million suffixes) a purchase setting
-- last_purchase_at, a loyalty tier or a PATCH took 5-8 s. Each update also locked the
-- vocabulary words of the customer's name, unchanged or not.
--
-- Now the update triggers are row triggers with a WHEN condition (a statement trigger cannot
-- name columns and have transition tables), so an update that leaves name and email alone runs
-- none of them; and old suffixes are joined as rows, one lookup each in email_suffixes_lookup
-- (organization, suffix, customer). Inserted and renamed customers take their vocabulary words
-- through one function.

CREATE OR REPLACE FUNCTION forget_email_suffixes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM email_suffixes s
    USING gone, email_suffixes_of(gone.email_search) AS was(suffix)
    WHERE s.organization_id = gone.organization_id AND s.suffix = was.suffix AND s.customer_id = gone.customer_id;
    RETURN NULL;
END
$$;

-- A customer whose email changed: the old suffixes out, the new ones in.
CREATE FUNCTION replace_row_email_suffixes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM email_suffixes s
    USING email_suffixes_of(OLD.email_search) AS was(suffix)
    WHERE s.organization_id = OLD.organization_id AND s.suffix = was.suffix AND s.customer_id = OLD.customer_id;
    INSERT INTO email_suffixes (organization_id, suffix, customer_id)
    SELECT NEW.organization_id, suffix, NEW.customer_id FROM email_suffixes_of(NEW.email_search) AS suffix;
    RETURN NULL;
END
$$;

-- The vocabulary words an organization's customers now use, locked in order without being
-- rewritten, so the prune (search::store::forget_unused_name_words) cannot lose one (V6).
CREATE FUNCTION remember_name_words_of(organization uuid, words text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO name_words (organization_id, word)
    SELECT DISTINCT organization, word FROM unnest(words) AS word
    ORDER BY 1, 2
    ON CONFLICT (organization_id, word) DO UPDATE SET word = EXCLUDED.word WHERE false;
$$;
GRANT EXECUTE ON FUNCTION remember_name_words_of(uuid, text[]) TO customer_app;

CREATE OR REPLACE FUNCTION remember_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    used record;
BEGIN
    FOR used IN
        SELECT changed.organization_id, array_agg(word) AS words
        FROM changed, unnest(tsvector_to_array(changed.search_words)) AS word
        GROUP BY 1 ORDER BY 1
    LOOP
        PERFORM remember_name_words_of(used.organization_id, used.words);
    END LOOP;
    RETURN NULL;
END
$$;

-- A customer whose name words changed: the new words into the vocabulary, and the postings
-- moved from the old words to the new.
CREATE FUNCTION repost_row_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM remember_name_words_of(NEW.organization_id, tsvector_to_array(NEW.search_words));
    DELETE FROM name_word_postings p
    USING unnest(tsvector_to_array(OLD.search_words)) AS w(word)
    WHERE p.organization_id = OLD.organization_id AND p.word = w.word AND p.customer_id = OLD.customer_id;
    INSERT INTO name_word_postings (organization_id, word, customer_id)
    SELECT NEW.organization_id, word, NEW.customer_id FROM unnest(tsvector_to_array(NEW.search_words)) AS word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

DROP TRIGGER customers_email_suffixes_on_update ON customers;
DROP TRIGGER customers_name_postings_on_update ON customers;
DROP TRIGGER customers_name_words_on_update ON customers;
DROP FUNCTION replace_email_suffixes();
DROP FUNCTION repost_name_words();

CREATE TRIGGER customers_email_suffixes_on_update AFTER UPDATE ON customers
    FOR EACH ROW WHEN (OLD.email_search IS DISTINCT FROM NEW.email_search)
    EXECUTE FUNCTION replace_row_email_suffixes();
CREATE TRIGGER customers_name_words_on_update AFTER UPDATE ON customers
    FOR EACH ROW WHEN (OLD.search_words IS DISTINCT FROM NEW.search_words)
    EXECUTE FUNCTION repost_row_name_words();
