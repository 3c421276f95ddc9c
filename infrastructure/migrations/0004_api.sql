-- API (issue #3): indexes for the REST routes' lookups and geo-queries. No column changes
-- (users/customers/geofences are also written by CDC).

-- Logout revokes by user; refresh looks up by digest (already unique).
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Routes listed per tenant in (scheduled_date, id) order; a driver's routes by status.
CREATE INDEX routes_driver_status ON routes (driver_id, status);
