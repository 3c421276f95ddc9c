-- Enrichment: visit lifecycle with 'departed', visit completion history, and what the worker
-- joins onto every position (route, next visit, distance and ETA to it, geofence).
ALTER TABLE planned_visits DROP CONSTRAINT planned_visits_status_check;
ALTER TABLE planned_visits ADD CONSTRAINT planned_visits_status_check
    CHECK (status IN ('pending', 'arrived', 'in_progress', 'departed', 'completed',
                      'skipped', 'failed', 'cancelled'));
ALTER TABLE planned_visits ADD COLUMN geofence_id bigint REFERENCES geofences (id);
ALTER TABLE planned_visits ADD COLUMN eta_at timestamptz;

ALTER TABLE routes ADD COLUMN completed_stops integer NOT NULL DEFAULT 0;
ALTER TABLE routes ADD COLUMN total_stops integer NOT NULL DEFAULT 0;

CREATE TABLE visit_completions (
    visit_id        uuid PRIMARY KEY REFERENCES planned_visits (id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    route_id        uuid NOT NULL,
    driver_id       uuid NOT NULL,
    customer_id     bigint NOT NULL,
    status          text NOT NULL,
    scheduled_date  date NOT NULL,
    arrived_at      timestamptz,
    departed_at     timestamptz,
    completed_at    timestamptz NOT NULL,
    dwell_s         double precision,
    on_time         boolean
);
CREATE INDEX visit_completions_driver_date ON visit_completions (driver_id, scheduled_date);

-- Per (driver, geofence) arrival/departure state machine, persisted so a restarted or
-- rebalanced worker continues where the previous owner stopped.
CREATE TABLE geofence_states (
    driver_id       uuid NOT NULL,
    geofence_id     bigint NOT NULL REFERENCES geofences (id) ON DELETE CASCADE,
    state           text NOT NULL CHECK (state IN ('outside', 'entering', 'inside', 'leaving')),
    since           timestamptz NOT NULL,
    last_fix_time   timestamptz NOT NULL,
    entered_at      timestamptz,
    PRIMARY KEY (driver_id, geofence_id)
);

ALTER TABLE positions ADD COLUMN route_id uuid;
ALTER TABLE positions ADD COLUMN next_visit_id uuid;
ALTER TABLE positions ADD COLUMN distance_to_next_m real;
ALTER TABLE positions ADD COLUMN eta_s real;
ALTER TABLE positions ADD COLUMN geofence_id bigint;

ALTER TABLE driver_positions ADD COLUMN route_id uuid;
ALTER TABLE driver_positions ADD COLUMN next_visit_id uuid;
ALTER TABLE driver_positions ADD COLUMN distance_to_next_m real;
ALTER TABLE driver_positions ADD COLUMN eta_s real;
ALTER TABLE driver_positions ADD COLUMN geofence_id bigint;
