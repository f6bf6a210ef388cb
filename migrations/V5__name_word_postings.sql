-- Customers by name word, so words in any order ("los andes" for "Comercial Los Andes S.A.",
-- a surname alone) are found by B-tree equality, which forced row-level security lets use an
-- index (the tsvector @@ match would be a filter over the whole organization).
-- The GIN indexes that forced RLS cannot use: the word match in any order and the trigram
-- index of the vocabulary (a few thousand words, read whole).
DROP INDEX customers_search_words;
DROP INDEX name_words_trgm;

CREATE TABLE name_word_postings (
    organization_id uuid NOT NULL,
    word            text NOT NULL,
    customer_id     uuid NOT NULL,
    PRIMARY KEY (organization_id, word, customer_id)
);

ALTER TABLE name_word_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE name_word_postings FORCE ROW LEVEL SECURITY;
CREATE POLICY name_word_postings_organization_isolation ON name_word_postings
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

-- Kept in step with customers.search_words, once per statement.
CREATE FUNCTION post_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO name_word_postings (organization_id, word, customer_id)
    SELECT added.organization_id, word, added.customer_id
    FROM added, unnest(tsvector_to_array(added.search_words)) AS word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION repost_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM name_word_postings p
    USING old_rows o JOIN new_rows n ON n.customer_id = o.customer_id,
          unnest(tsvector_to_array(o.search_words)) AS w(word)
    WHERE o.search_words IS DISTINCT FROM n.search_words
      AND p.organization_id = o.organization_id AND p.word = w.word AND p.customer_id = o.customer_id;
    INSERT INTO name_word_postings (organization_id, word, customer_id)
    SELECT n.organization_id, word, n.customer_id
    FROM old_rows o JOIN new_rows n ON n.customer_id = o.customer_id,
         unnest(tsvector_to_array(n.search_words)) AS word
    WHERE o.search_words IS DISTINCT FROM n.search_words
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION unpost_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM name_word_postings p
    USING gone, unnest(tsvector_to_array(gone.search_words)) AS w(word)
    WHERE p.organization_id = gone.organization_id AND p.word = w.word AND p.customer_id = gone.customer_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_name_postings_on_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION post_name_words();
CREATE TRIGGER customers_name_postings_on_update AFTER UPDATE ON customers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION repost_name_words();
CREATE TRIGGER customers_name_postings_on_delete AFTER DELETE ON customers
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION unpost_name_words();

-- The postings of the customers already here (the owner lifts FORCE for this backfill only).
ALTER TABLE customers NO FORCE ROW LEVEL SECURITY;
ALTER TABLE name_word_postings NO FORCE ROW LEVEL SECURITY;
INSERT INTO name_word_postings (organization_id, word, customer_id)
SELECT c.organization_id, word, c.customer_id
FROM customers c, unnest(tsvector_to_array(c.search_words)) AS word
ON CONFLICT DO NOTHING;
ALTER TABLE customers FORCE ROW LEVEL SECURITY;
ALTER TABLE name_word_postings FORCE ROW LEVEL SECURITY;
