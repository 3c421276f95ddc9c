-- Core tables: tenants, users, drivers, customers, geofences, routes, visits, live snapshot.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE tenants (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    -- sha256 of the tenant's own Traccar webhook key; the key itself is never stored.
    traccar_api_key_sha256  text UNIQUE,
    created_at              timestamptz NOT NULL DEFAULT now()
);

-- Cache of core_business.users (CDC fills it later); login reads it.
CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id       bigint UNIQUE,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    email           text NOT NULL,
    password_hash   text NOT NULL,
    name            text NOT NULL DEFAULT '',
    role            text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'driver')),
    driver_id       uuid,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email)
);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_sha256 text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE drivers (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text NOT NULL REFERENCES tenants (id),
    name                text NOT NULL,
    -- What the hardware or phone reports (Traccar uniqueId, OsmAnd id); one driver per device.
    device_unique_id    text NOT NULL UNIQUE,
    phone               text,
    email               text,
    vehicle_type        text,
    vehicle_plate       text,
    status              text NOT NULL DEFAULT 'active',
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drivers_tenant ON drivers (tenant_id);
ALTER TABLE users ADD CONSTRAINT users_driver_fk FOREIGN KEY (driver_id) REFERENCES drivers (id);

-- Cache of core_business.customers (CDC keeps it fresh); id is the source's primary key.
CREATE TABLE customers (
    id                  bigint PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    account_id          bigint,
    name                text NOT NULL,
    address             text,
    lat                 double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng                 double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    geofence_radius_m   integer NOT NULL DEFAULT 100 CHECK (geofence_radius_m > 0),
    customer_type       text,
    active              boolean NOT NULL DEFAULT true,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_tenant ON customers (tenant_id);

CREATE TABLE geofences (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id),
    customer_id     bigint UNIQUE REFERENCES customers (id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('circle', 'polygon')),
    -- For circles: the centre and radius they were made from; geom is the buffered polygon.
    center          geometry(Point, 4326),
    radius_m        double precision,
    geom            geometry(Polygon, 4326) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'circle' OR (center IS NOT NULL AND radius_m > 0))
);
CREATE INDEX geofences_geom ON geofences USING gist (geom);
CREATE INDEX geofences_tenant ON geofences (tenant_id);

CREATE TABLE routes (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text NOT NULL REFERENCES tenants (id),
    driver_id       uuid NOT NULL REFERENCES drivers (id),
    name            text,
    scheduled_date  date NOT NULL,
    status          text NOT NULL DEFAULT 'planned'
                    CHECK (status IN ('planned', 'in_progress', 'completed', 'cancelled')),
    planned_geom    geometry(LineString, 4326),
    -- 'planned' when a client sent the path, 'derived' when built from the visits' order.
    geom_source     text CHECK (geom_source IN ('planned', 'derived')),
    started_at      timestamptz,
    completed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routes_driver_date ON routes (driver_id, scheduled_date);
CREATE INDEX routes_tenant_date ON routes (tenant_id, scheduled_date);

CREATE TABLE planned_visits (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text NOT NULL REFERENCES tenants (id),
    route_id            uuid NOT NULL REFERENCES routes (id) ON DELETE CASCADE,
    driver_id           uuid NOT NULL REFERENCES drivers (id),
    customer_id         bigint NOT NULL REFERENCES customers (id),
    sequence_number     integer NOT NULL CHECK (sequence_number > 0),
    visit_type          text NOT NULL DEFAULT 'delivery',
    scheduled_date      date NOT NULL,
    time_window_start   time,
    time_window_end     time,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'arrived', 'in_progress', 'completed',
                                          'skipped', 'failed', 'cancelled')),
    arrived_at          timestamptz,
    departed_at         timestamptz,
    completed_at        timestamptz,
    notes               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (route_id, sequence_number)
);
CREATE INDEX planned_visits_driver ON planned_visits (driver_id, scheduled_date);

-- Latest position per driver; only ever moves forward in fix time.
CREATE TABLE driver_positions (
    driver_id           uuid PRIMARY KEY REFERENCES drivers (id) ON DELETE CASCADE,
    tenant_id           text NOT NULL,
    device_unique_id    text NOT NULL,
    fix_time            timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    lon                 double precision NOT NULL,
    lat                 double precision NOT NULL,
    geom                geometry(Point, 4326) NOT NULL,
    speed_kmh           real,
    course              real,
    altitude            real,
    accuracy            real,
    valid               boolean NOT NULL DEFAULT true,
    h3_cell             bigint NOT NULL,
    attributes          jsonb NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX driver_positions_tenant ON driver_positions (tenant_id);
CREATE INDEX driver_positions_geom ON driver_positions USING gist (geom);

CREATE TABLE sync_state (
    table_name          text PRIMARY KEY,
    last_event_at       timestamptz,
    last_source_ts      timestamptz,
    last_source_pos     text,
    events_processed    bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
