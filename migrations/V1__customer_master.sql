-- The customer master: seed 002's data model with the SPEC's corrections.
-- Every tenant table carries organization_id and is guarded by a forced RLS policy that reads
-- the transaction-local setting app.current_organization_id.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- The organization of the current transaction, or NULL when none was set.
-- current_setting(.., true) answers '' after a transaction-local set has ended.
CREATE FUNCTION current_organization_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.current_organization_id', true), '')::uuid $$;

-- unaccent() is only STABLE (it reads its dictionary by name); this wrapper names the
-- dictionary explicitly so search indexes can use it.
CREATE FUNCTION immutable_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

-- Organizations that have data here: ids only, so scheduled jobs can visit each tenant in
-- its own tenant transaction instead of bypassing row-level security.
CREATE TABLE organizations (
    organization_id uuid PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Customers ---------------------------------------------------------------------------------

CREATE TABLE customers (
    customer_id        uuid PRIMARY KEY,
    organization_id    uuid NOT NULL,
    customer_type      varchar(20) NOT NULL DEFAULT 'b2c',
    first_name         varchar(100),
    last_name          varchar(100),
    email              varchar(255),
    phone              varchar(20),
    document_type      varchar(20),
    document_number    varchar(50),
    birth_date         date,
    gender             varchar(20),
    status             varchar(20) NOT NULL DEFAULT 'active',
    loyalty_tier       varchar(20) NOT NULL DEFAULT 'bronze',
    tier_updated_at    timestamptz,
    preferred_language varchar(10) NOT NULL DEFAULT 'es',
    marketing_consent  boolean NOT NULL DEFAULT false,
    tags               varchar(255)[] NOT NULL DEFAULT '{}',
    metadata           jsonb,
    notes              text,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_purchase_at   timestamptz,
    erased_at          timestamptz,

    CONSTRAINT customers_customer_type_check CHECK (customer_type IN ('b2c', 'b2b')),
    CONSTRAINT customers_status_check CHECK (status IN ('active', 'inactive', 'blocked')),
    CONSTRAINT customers_loyalty_tier_check
        CHECK (loyalty_tier IN ('bronze', 'silver', 'gold', 'platinum')),
    CONSTRAINT customers_document_type_check
        CHECK (document_type IN ('cedula', 'ruc', 'passport', 'other')),
    CONSTRAINT customers_document_pair_check
        CHECK ((document_type IS NULL) = (document_number IS NULL)),
    CONSTRAINT customers_name_check
        CHECK (erased_at IS NOT NULL OR (first_name IS NOT NULL AND last_name IS NOT NULL)),
    -- Composite key target so child rows can only point at a customer of their own organization.
    CONSTRAINT customers_organization_customer_key UNIQUE (organization_id, customer_id)
);

-- Uniqueness is per organization: the same person may be a customer of two tenants.
CREATE UNIQUE INDEX customers_org_email_key ON customers (organization_id, lower(email));
CREATE UNIQUE INDEX customers_org_phone_key ON customers (organization_id, phone);
CREATE UNIQUE INDEX customers_org_document_key
    ON customers (organization_id, document_type, document_number);
CREATE INDEX customers_org_status_idx ON customers (organization_id, status);
CREATE INDEX customers_org_tier_idx ON customers (organization_id, loyalty_tier);
CREATE INDEX customers_org_last_purchase_idx ON customers (organization_id, last_purchase_at DESC);

CREATE TABLE customer_status_history (
    status_change_id uuid PRIMARY KEY,
    organization_id  uuid NOT NULL,
    customer_id      uuid NOT NULL,
    from_status      varchar(20),
    to_status        varchar(20) NOT NULL,
    reason           varchar(500),
    changed_by       varchar(255) NOT NULL,
    changed_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, customer_id) REFERENCES customers (organization_id, customer_id)
);
CREATE INDEX customer_status_history_customer_idx
    ON customer_status_history (organization_id, customer_id, changed_at);

CREATE TABLE addresses (
    address_id      uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    customer_id     uuid NOT NULL,
    address_type    varchar(20) NOT NULL DEFAULT 'shipping',
    recipient_name  varchar(255),
    address_line1   varchar(255) NOT NULL,
    address_line2   varchar(255),
    city            varchar(100) NOT NULL,
    state           varchar(100),
    postal_code     varchar(20),
    country         varchar(2) NOT NULL DEFAULT 'PA',
    phone           varchar(20),
    is_default      boolean NOT NULL DEFAULT false,
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT addresses_address_type_check
        CHECK (address_type IN ('shipping', 'billing', 'both')),
    FOREIGN KEY (organization_id, customer_id)
        REFERENCES customers (organization_id, customer_id) ON DELETE CASCADE
);
CREATE INDEX addresses_customer_idx ON addresses (organization_id, customer_id);
-- At most one default of each kind per customer; 'both' counts as both kinds.
CREATE UNIQUE INDEX addresses_default_shipping_key ON addresses (customer_id)
    WHERE is_default AND address_type IN ('shipping', 'both');
CREATE UNIQUE INDEX addresses_default_billing_key ON addresses (customer_id)
    WHERE is_default AND address_type IN ('billing', 'both');

-- Credit ------------------------------------------------------------------------------------

CREATE TABLE credit_accounts (
    credit_account_id uuid PRIMARY KEY,
    organization_id   uuid NOT NULL,
    customer_id       uuid NOT NULL,
    credit_limit      numeric(12, 2) NOT NULL,
    credit_used       numeric(12, 2) NOT NULL DEFAULT 0,
    credit_available  numeric(12, 2) GENERATED ALWAYS AS (credit_limit - credit_used) STORED,
    payment_term_days integer NOT NULL DEFAULT 30,
    status            varchar(20) NOT NULL DEFAULT 'pending',
    approved_at       timestamptz,
    approved_by       varchar(255),
    approval_notes    text,
    suspended_at      timestamptz,
    suspension_reason text,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT credit_accounts_customer_key UNIQUE (organization_id, customer_id),
    CONSTRAINT credit_accounts_status_check
        CHECK (status IN ('pending', 'approved', 'suspended', 'cancelled')),
    CONSTRAINT credit_accounts_limit_check CHECK (credit_limit >= 0),
    CONSTRAINT credit_accounts_used_check CHECK (credit_used >= 0 AND credit_used <= credit_limit),
    CONSTRAINT credit_accounts_term_check CHECK (payment_term_days BETWEEN 0 AND 365),
    CONSTRAINT credit_accounts_organization_account_key UNIQUE (organization_id, credit_account_id),
    FOREIGN KEY (organization_id, customer_id) REFERENCES customers (organization_id, customer_id)
);
CREATE INDEX credit_accounts_status_idx ON credit_accounts (organization_id, status);

-- No foreign key to credit_accounts: its KEY SHARE lock on the hot account row turns into
-- multixact churn under concurrent reservations (see shared/TOOLING.md). The credit engine
-- writes usages only inside the transaction that updated the account row.
CREATE TABLE credit_usages (
    usage_id          uuid PRIMARY KEY,
    usage_seq         bigint GENERATED ALWAYS AS IDENTITY,
    organization_id   uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    order_id          uuid NOT NULL,
    amount            numeric(12, 2) NOT NULL,
    amount_paid       numeric(12, 2) NOT NULL DEFAULT 0,
    status            varchar(20) NOT NULL DEFAULT 'pending',
    due_date          date NOT NULL,
    paid_at           timestamptz,
    released_at       timestamptz,
    created_by        varchar(255) NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT credit_usages_order_key UNIQUE (organization_id, order_id),
    CONSTRAINT credit_usages_status_check
        CHECK (status IN ('pending', 'paid', 'overdue', 'cancelled')),
    CONSTRAINT credit_usages_amount_check CHECK (amount > 0),
    CONSTRAINT credit_usages_paid_check CHECK (amount_paid >= 0 AND amount_paid <= amount)
);
CREATE INDEX credit_usages_account_idx
    ON credit_usages (organization_id, credit_account_id, usage_seq);
CREATE INDEX credit_usages_open_due_idx ON credit_usages (due_date) WHERE status = 'pending';
-- What is still owed, oldest first: payments settle from here and overdue sums read it, so
-- their cost follows the open usages, not the account's whole history.
CREATE INDEX credit_usages_open_idx
    ON credit_usages (credit_account_id, usage_seq) WHERE status IN ('pending', 'overdue');

-- payment_id may come from the caller, so it is unique per organization, not globally.
CREATE TABLE credit_payments (
    organization_id   uuid NOT NULL,
    payment_id        uuid NOT NULL,
    payment_seq       bigint GENERATED ALWAYS AS IDENTITY,
    credit_account_id uuid NOT NULL,
    amount            numeric(12, 2) NOT NULL,
    payment_method    varchar(30) NOT NULL,
    payment_reference varchar(255),
    payment_date      date NOT NULL DEFAULT CURRENT_DATE,
    idempotency_key   varchar(255),
    recorded_by       varchar(255) NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (organization_id, payment_id),
    CONSTRAINT credit_payments_amount_check CHECK (amount > 0),
    CONSTRAINT credit_payments_method_check
        CHECK (payment_method IN ('cash', 'card', 'transfer', 'check'))
);
CREATE INDEX credit_payments_account_idx
    ON credit_payments (organization_id, credit_account_id, payment_seq);
CREATE UNIQUE INDEX credit_payments_idempotency_key
    ON credit_payments (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Every movement of an account, with who and when; the statement replays these rows.
-- `amount` is signed by its effect on credit_used (use +, release and payment -, else 0), and
-- movement_seq is drawn after the account row is locked, so it orders one account's history.
CREATE TABLE credit_movements (
    movement_id        uuid PRIMARY KEY,
    movement_seq       bigint GENERATED ALWAYS AS IDENTITY,
    organization_id    uuid NOT NULL,
    credit_account_id  uuid NOT NULL,
    kind               varchar(30) NOT NULL,
    amount             numeric(12, 2) NOT NULL DEFAULT 0,
    credit_used_after  numeric(12, 2) NOT NULL,
    credit_limit_after numeric(12, 2) NOT NULL,
    order_id           uuid,
    payment_id         uuid,
    reason             varchar(500),
    actor              varchar(255) NOT NULL,
    occurred_at        timestamptz NOT NULL DEFAULT clock_timestamp(),

    CONSTRAINT credit_movements_kind_check CHECK (kind IN (
        'opened', 'approved', 'limit_changed', 'terms_changed', 'suspended', 'reactivated',
        'cancelled', 'used', 'released', 'payment', 'overdue'))
);
CREATE INDEX credit_movements_account_idx
    ON credit_movements (organization_id, credit_account_id, movement_seq);

-- Segments and order facts ------------------------------------------------------------------

CREATE TABLE customer_segments (
    segment_id                uuid PRIMARY KEY,
    organization_id           uuid NOT NULL,
    customer_id               uuid NOT NULL,
    segment_code              varchar(50) NOT NULL,
    rfm_recency               integer NOT NULL,
    rfm_frequency             integer NOT NULL,
    rfm_monetary              integer NOT NULL,
    rfm_score                 integer GENERATED ALWAYS AS (rfm_recency + rfm_frequency + rfm_monetary) STORED,
    lifetime_value            numeric(14, 2) NOT NULL DEFAULT 0,
    average_order_value       numeric(12, 2) NOT NULL DEFAULT 0,
    total_orders              integer NOT NULL DEFAULT 0,
    days_since_last_purchase  integer,
    is_vip                    boolean NOT NULL DEFAULT false,
    is_at_risk                boolean NOT NULL DEFAULT false,
    calculated_at             timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT customer_segments_customer_key UNIQUE (organization_id, customer_id),
    CONSTRAINT customer_segments_code_check CHECK (segment_code IN (
        'champions', 'loyal', 'potential_loyalist', 'new', 'at_risk', 'lost')),
    CONSTRAINT customer_segments_scores_check CHECK (
        rfm_recency BETWEEN 1 AND 5 AND rfm_frequency BETWEEN 1 AND 5 AND rfm_monetary BETWEEN 1 AND 5),
    FOREIGN KEY (organization_id, customer_id) REFERENCES customers (organization_id, customer_id)
);
CREATE INDEX customer_segments_code_idx ON customer_segments (organization_id, segment_code, customer_id);

-- Order facts from the order service: the source of RFM and last_purchase_at.
CREATE TABLE purchases (
    organization_id uuid NOT NULL,
    order_id        uuid NOT NULL,
    customer_id     uuid NOT NULL,
    total_amount    numeric(12, 2) NOT NULL,
    occurred_at     timestamptz NOT NULL,
    status          varchar(20) NOT NULL DEFAULT 'completed',
    cancelled_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (organization_id, order_id),
    CONSTRAINT purchases_status_check CHECK (status IN ('completed', 'cancelled')),
    CONSTRAINT purchases_amount_check CHECK (total_amount >= 0),
    FOREIGN KEY (organization_id, customer_id) REFERENCES customers (organization_id, customer_id)
);
CREATE INDEX purchases_customer_idx ON purchases (organization_id, customer_id, occurred_at DESC);

-- Events ------------------------------------------------------------------------------------

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    event_id        uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    event_type      varchar(100) NOT NULL,
    message_group   varchar(100) NOT NULL,
    payload         jsonb NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending_idx ON outbox (occurred_at) WHERE published_at IS NULL;

-- Inbound event ids already applied: recorded in the transaction that applies the event.
CREATE TABLE inbound_events (
    organization_id uuid NOT NULL,
    event_id        uuid NOT NULL,
    event_type      varchar(100) NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    -- Per organization: another tenant's event id must never look like a duplicate here.
    PRIMARY KEY (organization_id, event_id)
);

-- 360 view ----------------------------------------------------------------------------------

CREATE VIEW v_customer_360 WITH (security_invoker = true) AS
SELECT
    c.customer_id,
    c.organization_id,
    c.first_name,
    c.last_name,
    c.email,
    c.phone,
    c.customer_type,
    c.status,
    c.loyalty_tier,
    c.tier_updated_at,
    ca.credit_limit,
    ca.credit_used,
    ca.credit_available,
    ca.payment_term_days,
    ca.status AS credit_status,
    COALESCE((
        SELECT sum(u.amount - u.amount_paid)
        FROM credit_usages u
        WHERE u.organization_id = c.organization_id
          AND u.credit_account_id = ca.credit_account_id
          AND u.status = 'overdue'
    ), 0)::numeric(12, 2) AS overdue_amount,
    cs.segment_code,
    cs.rfm_score,
    cs.lifetime_value,
    cs.is_vip,
    cs.is_at_risk,
    c.last_purchase_at,
    c.created_at,
    c.erased_at
FROM customers c
LEFT JOIN credit_accounts ca
    ON ca.organization_id = c.organization_id AND ca.customer_id = c.customer_id
LEFT JOIN customer_segments cs
    ON cs.organization_id = c.organization_id AND cs.customer_id = c.customer_id;

-- Row-level security ------------------------------------------------------------------------

DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY[
        'customers', 'customer_status_history', 'addresses', 'credit_accounts', 'credit_usages',
        'credit_payments', 'credit_movements', 'customer_segments', 'purchases', 'outbox',
        'inbound_events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format(
            'CREATE POLICY %I ON %I USING (organization_id = current_organization_id()) '
            'WITH CHECK (organization_id = current_organization_id())',
            tenant_table || '_organization_isolation', tenant_table);
    END LOOP;
END
$$;

-- The registry is the one deliberate exception: anyone may list organization ids (they carry
-- nothing else), but a transaction may only register its own organization.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organizations_listing ON organizations FOR SELECT USING (true);
CREATE POLICY organizations_registration ON organizations FOR INSERT
    WITH CHECK (organization_id = current_organization_id());

-- The runtime role: logs in, owns nothing, cannot bypass RLS. Roles are cluster-wide, so
-- several databases of one cluster (tests, environments) share it.
DO $$
BEGIN
    CREATE ROLE customer_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO customer_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO customer_app;
REVOKE ALL ON refinery_schema_history FROM customer_app;
GRANT EXECUTE ON FUNCTION current_organization_id(), immutable_unaccent(text) TO customer_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO customer_app;
