-- Documents found however they are typed: "8-823-1456", "8 823 1456" and "88231456" share the
-- key 88231456 (the stored number is already upper case without spaces). A stored column,
-- so the search compares it by B-tree equality, which forced row-level security allows.
ALTER TABLE customers
    ADD COLUMN document_key text GENERATED ALWAYS AS (regexp_replace(document_number, '[^0-9A-Z]', '', 'g')) STORED;

CREATE INDEX customers_document_key_idx ON customers (organization_id, document_key);
