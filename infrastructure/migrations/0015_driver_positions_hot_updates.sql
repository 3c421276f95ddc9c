-- driver_positions is the one-row-per-driver snapshot: each enrichment batch rewrites the
-- rows of the drivers in it (5,000 updates/s at 5,000 fixes/s). A GiST index on geom, which
-- every update changes, made each of them a new index entry and ruled out HOT updates
-- (14 of 15.9 million in the ingest benchmark), and nothing reads the table by location:
-- live geo-queries use Redis GEO, and a scan of one row per driver is fast anyway.
-- Without it, and with room left on each page, an update stays on its page (HOT).
DROP INDEX IF EXISTS driver_positions_geom;
ALTER TABLE driver_positions SET (fillfactor = 50);
