-- Per-fix movement labels, written by the enrichment worker (geo.movement.step_motion) so
-- that playback, heatmap and daily aggregates are plain sums: no window function, nothing
-- a continuous aggregate cannot express. Measured from the driver's previous fix of the
-- same UTC day; NULL on the day's first fix, on invalid fixes and on history from before.
ALTER TABLE positions
    ADD COLUMN step_s real,             -- seconds since the previous fix
    ADD COLUMN step_m real,             -- metres from it
    ADD COLUMN motion smallint,         -- the interval: 1 moving, 2 idle, 3 untimed, 4 stopped
    ADD COLUMN trip_m real,             -- its distance driven (inside a trip, not an outlier)
    ADD COLUMN segment_start smallint,  -- 1 a trip starts at this fix, 2 a stop does
    ADD COLUMN stop_counted boolean;    -- the current stop reached 180 s at this fix
