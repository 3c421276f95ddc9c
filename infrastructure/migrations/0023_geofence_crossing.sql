-- The boundary crossing being watched by each (driver, geofence) state machine
-- (geo/geofence_state.py): arrivals and departures are dated at the estimated edge crossing,
-- and the estimate must survive a restart or a rebalance like the rest of the state.
ALTER TABLE geofence_states ADD COLUMN crossing_dip double precision NOT NULL DEFAULT 0;
ALTER TABLE geofence_states ADD COLUMN crossing_first timestamptz;
ALTER TABLE geofence_states ADD COLUMN crossing_last timestamptz;
