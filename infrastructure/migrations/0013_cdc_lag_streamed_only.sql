-- CDC lag now counts streamed events only (ingest/cdc.py): snapshot reads carry the
-- snapshot's start as their source time, and a lag recorded from them read "degraded" until
-- the next change in the source. Forget the lags recorded so far; each table's next streamed
-- event records its own.
UPDATE sync_state SET last_lag_ms = NULL;
