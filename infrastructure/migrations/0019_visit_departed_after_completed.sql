-- Issue 20: the seed allows completed → departed. A visit that departs after it was completed
-- still counts in routes.completed_stops, and its visit_completions row gets the departure
-- time and the dwell up to it (the row keeps status 'completed').
CREATE OR REPLACE FUNCTION fleetpulse_visit_bookkeeping() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    route uuid;
BEGIN
    route := COALESCE(NEW.route_id, OLD.route_id);
    UPDATE routes r SET
        total_stops = (SELECT count(*) FROM planned_visits v
                       WHERE v.route_id = route AND v.status <> 'cancelled'),
        completed_stops = (SELECT count(*) FROM planned_visits v
                           WHERE v.route_id = route
                             AND (v.status = 'completed'
                                  OR (v.status = 'departed' AND v.completed_at IS NOT NULL))),
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
    ELSIF TG_OP = 'UPDATE' AND OLD.status = 'completed' AND NEW.status = 'departed' THEN
        UPDATE visit_completions c SET departed_at = NEW.departed_at,
            dwell_s = extract(epoch FROM (NEW.departed_at - NEW.arrived_at))
        WHERE c.visit_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
