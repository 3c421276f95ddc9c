-- Position history on plain PostgreSQL: native partitioning by day on fix_time.
-- Same relation name and columns as the TimescaleDB variant (0002_positions.timescale.sql).
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
    -- Idempotent sink: a replayed or re-posted fix is stored once.
    PRIMARY KEY (driver_id, fix_time)
) PARTITION BY RANGE (fix_time);
CREATE INDEX positions_tenant_time ON positions (tenant_id, fix_time);

-- Create the daily partitions covering [first_day, last_day]; safe to call concurrently.
CREATE FUNCTION fleetpulse_ensure_position_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := first_day;
    created integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('fleetpulse_position_partitions'));
    WHILE d <= last_day LOOP
        part := format('positions_p%s', to_char(d, 'YYYYMMDD'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                part,
                (d::timestamp AT TIME ZONE 'UTC'),
                ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END $$;

SELECT fleetpulse_ensure_position_partitions(
    (now() AT TIME ZONE 'UTC')::date - 7, (now() AT TIME ZONE 'UTC')::date + 7);
