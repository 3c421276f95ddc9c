-- Position history on TimescaleDB: a hypertable with compression and retention.
-- Same relation name and columns as the plain variant (0002_positions.plain.sql).
CREATE TABLE positions (
    tenant_id           text NOT NULL,
    driver_id           uuid NOT NULL,
    device_unique_id    text NOT NULL,
    fix_time            timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    lon                 double precision NOT NULL,
    lat                 double precision NOT NULL,
    speed_kmh           real,
    course              real,
    altitude            real,
    accuracy            real,
    valid               boolean NOT NULL DEFAULT true,
    protocol            text,
    h3_cell             bigint NOT NULL,
    attributes          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (driver_id, fix_time)
);
CREATE INDEX positions_tenant_time ON positions (tenant_id, fix_time);
SELECT create_hypertable('positions', by_range('fix_time', INTERVAL '1 day'));
ALTER TABLE positions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'driver_id',
    timescaledb.compress_orderby = 'fix_time'
);
-- No policies here: `fleetpulse migrate` adds them from the settings once every migration
-- is in (analytics.refresh.sync_policies), so no background job runs while later migrations
-- change the table.

-- Chunks are created by TimescaleDB itself; keep the function the worker calls.
CREATE FUNCTION fleetpulse_ensure_position_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
