-- Customer search: normalized columns and one index per field, so each kind of match (name,
-- email, phone, document) is an index lookup of its own.

ALTER TABLE customers
    -- "José Pérez" -> "jose perez": accents and case ignored, first and last name together.
    ADD COLUMN search_name text GENERATED ALWAYS AS (
        lower(immutable_unaccent(coalesce(first_name, '') || ' ' || coalesce(last_name, '')))) STORED,
    -- "+50761234567" -> "50761234567": phones compared by digits, in any format.
    ADD COLUMN phone_digits text GENERATED ALWAYS AS (
        regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')) STORED,
    -- "+50761234567" -> "61234567": Panamanian numbers as they are dialled at home.
    ADD COLUMN phone_national text GENERATED ALWAYS AS (
        regexp_replace(regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'), '^507', '')) STORED,
    -- The words of the name ('jose':1 'perez':2), for word-prefix matching in any order.
    ADD COLUMN search_words tsvector GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig,
                    lower(immutable_unaccent(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))))) STORED;

-- Name words in any order: customers having every (corrected) typed word.
CREATE INDEX customers_search_words ON customers USING gin (search_words);
-- Names starting with what was typed, in order: short queries and exact phrases.
CREATE INDEX customers_search_name_prefix ON customers (organization_id, search_name text_pattern_ops);
-- Under forced row-level security only leakproof operators (equality, range comparisons) may
-- drive an index, so exact and prefix matches use B-trees; LIKE fragments are a fallback.
CREATE INDEX customers_email_prefix ON customers (organization_id, lower(email) text_pattern_ops);
CREATE INDEX customers_email_trgm ON customers USING gin (lower(email) gin_trgm_ops);
-- Phone digits as typed, with or without the country code.
CREATE INDEX customers_phone_digits_prefix ON customers (organization_id, phone_digits text_pattern_ops);
CREATE INDEX customers_phone_national_prefix ON customers (organization_id, phone_national text_pattern_ops);
-- Document numbers of any type.
CREATE INDEX customers_document_number_idx ON customers (organization_id, document_number);

-- The distinct words of the organization's customer names. Typed words are corrected against
-- this small list (trigram similarity), and customers are then found by exact words, which
-- the search_words index answers quickly even for the most common names.
CREATE TABLE name_words (
    organization_id uuid NOT NULL,
    word            text NOT NULL,
    PRIMARY KEY (organization_id, word)
);
CREATE INDEX name_words_trgm ON name_words USING gin (word gin_trgm_ops);

ALTER TABLE name_words ENABLE ROW LEVEL SECURITY;
ALTER TABLE name_words FORCE ROW LEVEL SECURITY;
CREATE POLICY name_words_organization_isolation ON name_words
    USING (organization_id = current_organization_id())
    WITH CHECK (organization_id = current_organization_id());

-- Remembers the name words of inserted or updated customers, once per statement.
CREATE FUNCTION remember_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO name_words (organization_id, word)
    SELECT DISTINCT changed.organization_id, word
    FROM changed, unnest(tsvector_to_array(changed.search_words)) AS word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_name_words_on_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION remember_name_words();
CREATE TRIGGER customers_name_words_on_update AFTER UPDATE ON customers
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION remember_name_words();
