-- CDC (issue #8): PostgreSQL cache of core_business (MariaDB/MySQL) kept fresh by Debezium
-- events through `fleetpulse cdc`.
--
-- Idempotency: every cached row remembers the binlog position of the change it holds,
-- source_position = {binlog file sequence, position, row in event}; arrays compare
-- lexicographically, so "apply only if newer" is one comparison. A deleted row leaves a
-- tombstone with its position, so a replayed older insert cannot bring it back.

ALTER TABLE customers
    ADD COLUMN contact_name     text,
    ADD COLUMN contact_phone    text,
    ADD COLUMN contact_email    text,
    ADD COLUMN source_position  bigint[],
    ADD COLUMN source_ts        timestamptz,
    ADD COLUMN synced_at        timestamptz,
    -- Set instead of deleting when planned visits still reference the customer.
    ADD COLUMN deleted_at       timestamptz;

ALTER TABLE users
    ADD COLUMN source_position  bigint[],
    ADD COLUMN source_ts        timestamptz,
    ADD COLUMN synced_at        timestamptz;

CREATE TABLE accounts_cache (
    id              bigint PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    name            text NOT NULL,
    account_type    text NOT NULL DEFAULT 'standard',
    settings        jsonb,
    created_at      timestamptz,
    updated_at      timestamptz,
    source_position bigint[] NOT NULL,
    source_ts       timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_cache_tenant ON accounts_cache (tenant_id, id);

CREATE TABLE products_cache (
    id              bigint PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    sku             text NOT NULL,
    name            text NOT NULL,
    description     text,
    unit_price      numeric(12, 2) NOT NULL DEFAULT 0,
    weight_kg       numeric(10, 3),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz,
    updated_at      timestamptz,
    source_position bigint[] NOT NULL,
    source_ts       timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_cache_tenant ON products_cache (tenant_id, id);

CREATE TABLE orders_cache (
    id              bigint PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    -- No foreign key: orders and customers arrive on different topics, in any order.
    customer_id     bigint NOT NULL,
    order_number    text NOT NULL,
    status          text NOT NULL,
    total           numeric(12, 2) NOT NULL DEFAULT 0,
    currency        text NOT NULL DEFAULT 'USD',
    scheduled_date  date,
    items           jsonb,
    notes           text,
    created_at      timestamptz,
    updated_at      timestamptz,
    source_position bigint[] NOT NULL,
    source_ts       timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_cache_tenant ON orders_cache (tenant_id, id);
CREATE INDEX orders_cache_customer ON orders_cache (customer_id);

CREATE TABLE cdc_tombstones (
    table_name      text NOT NULL,
    source_id       bigint NOT NULL,
    source_position bigint[] NOT NULL,
    deleted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, source_id)
);

-- sync_state (0001) per table: + lag of the last applied event and skipped replays.
ALTER TABLE sync_state
    ADD COLUMN events_skipped   bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_lag_ms      double precision;
