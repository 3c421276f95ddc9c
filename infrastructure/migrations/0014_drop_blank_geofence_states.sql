-- A plain "outside, nothing pending" geofence track is the same as no track
-- (ingest/geofencing.py TrackStore.put drops it and deletes its row). Earlier workers wrote
-- such rows for every geofence a driver came near; a worker loads and walks all of a
-- driver's rows, and now skips outside tracks a fix does not move. Delete the leftovers.
DELETE FROM geofence_states WHERE state = 'outside' AND fixes = 0 AND doubtful = 0;
