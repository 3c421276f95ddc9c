-- Enrichment state and plumbing: evidence counters of the geofence state machine, change
-- notifications for the workers' in-process caches, the route's stop counters and the
-- visit completion record kept by triggers (whoever changes a visit: worker or API), and an
-- outbox so events decided in a transaction are published at least once.
ALTER TABLE geofence_states ADD COLUMN fixes integer NOT NULL DEFAULT 0;
ALTER TABLE geofence_states ADD COLUMN doubtful integer NOT NULL DEFAULT 0;

CREATE TABLE event_outbox (
    id          uuid PRIMARY KEY,
    topic       text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_outbox_created ON event_outbox (created_at);

-- Workers cache each driver's plan (active route, visits, geometry); tell them what changed.
CREATE FUNCTION fleetpulse_notify_plan_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec record;
    driver text;
BEGIN
    rec := COALESCE(NEW, OLD);
    IF TG_TABLE_NAME = 'drivers' THEN
        driver := rec.id::text;
    ELSIF TG_TABLE_NAME IN ('routes', 'planned_visits') THEN
        driver := rec.driver_id::text;
    ELSE
        driver := '*';  -- geofences, customers: any driver's plan may use them
    END IF;
    PERFORM pg_notify('fleetpulse_plan_changes',
                      json_build_object('table', TG_TABLE_NAME, 'driver', driver)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER routes_notify AFTER INSERT OR UPDATE OR DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_notify_plan_change();
CREATE TRIGGER planned_visits_notify AFTER INSERT OR UPDATE OR DELETE ON planned_visits
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_notify_plan_change();
CREATE TRIGGER drivers_notify AFTER INSERT OR UPDATE OR DELETE ON drivers
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_notify_plan_change();
CREATE TRIGGER geofences_notify AFTER INSERT OR UPDATE OR DELETE ON geofences
    FOR EACH STATEMENT EXECUTE FUNCTION fleetpulse_notify_plan_change();
CREATE TRIGGER customers_notify AFTER UPDATE OR DELETE ON customers
    FOR EACH STATEMENT EXECUTE FUNCTION fleetpulse_notify_plan_change();

-- Keep routes.total_stops / completed_stops and visit_completions true whoever changes a
-- visit (the worker's automatic arrival/departure, or a person through the API).
CREATE FUNCTION fleetpulse_visit_bookkeeping() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    route uuid;
BEGIN
    route := COALESCE(NEW.route_id, OLD.route_id);
    UPDATE routes r SET
        total_stops = (SELECT count(*) FROM planned_visits v
                       WHERE v.route_id = route AND v.status <> 'cancelled'),
        completed_stops = (SELECT count(*) FROM planned_visits v
                           WHERE v.route_id = route AND v.status = 'completed'),
        updated_at = now()
    WHERE r.id = route;
    IF TG_OP = 'UPDATE' AND NEW.status IN ('completed', 'skipped', 'failed')
       AND OLD.status IS DISTINCT FROM NEW.status THEN
        INSERT INTO visit_completions (visit_id, tenant_id, route_id, driver_id, customer_id,
            status, scheduled_date, arrived_at, departed_at, completed_at, dwell_s, on_time)
        VALUES (NEW.id, NEW.tenant_id, NEW.route_id, NEW.driver_id, NEW.customer_id,
            NEW.status, NEW.scheduled_date, NEW.arrived_at, NEW.departed_at,
            COALESCE(NEW.completed_at, now()),
            extract(epoch FROM (COALESCE(NEW.departed_at, NEW.completed_at, now())
                                - NEW.arrived_at)),
            CASE WHEN NEW.arrived_at IS NULL OR NEW.time_window_end IS NULL THEN NULL
                 ELSE (NEW.arrived_at AT TIME ZONE 'UTC')::time <= NEW.time_window_end END)
        ON CONFLICT (visit_id) DO UPDATE SET status = EXCLUDED.status,
            completed_at = EXCLUDED.completed_at, departed_at = EXCLUDED.departed_at,
            dwell_s = EXCLUDED.dwell_s, on_time = EXCLUDED.on_time;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER planned_visits_bookkeeping
    AFTER INSERT OR DELETE OR UPDATE OF status ON planned_visits
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_visit_bookkeeping();
