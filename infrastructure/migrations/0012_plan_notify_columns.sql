-- Notify plan changes only when a visit's plan changes: the worker's own per-batch eta_at
-- updates fired the trigger and made every worker drop and rebuild its drivers' plans on
-- every batch (seen in a py-spy profile of bench/ingest.py: 79 % of the worker's time).
DROP TRIGGER planned_visits_notify ON planned_visits;
CREATE TRIGGER planned_visits_notify
    AFTER INSERT OR DELETE
       OR UPDATE OF status, sequence_number, customer_id, geofence_id, route_id, driver_id
    ON planned_visits
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_notify_plan_change();

-- Routes: the bookkeeping trigger touches completed_stops/total_stops/updated_at on every
-- visit change; only a change of what the plan is made of matters to the workers.
DROP TRIGGER routes_notify ON routes;
CREATE TRIGGER routes_notify
    AFTER INSERT OR DELETE
       OR UPDATE OF status, driver_id, scheduled_date, planned_geom
    ON routes
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_notify_plan_change();
