"""CDC: Debezium's ``cdc.*`` topics from the MariaDB/MySQL source of truth into PostgreSQL.

* ``connector``: the Debezium connector's config, registration and status (Kafka Connect);
* ``events``: a change event parsed from its envelope; ``apply``: one event into its cache
  table (idempotent by source position), geofences and users following;
* ``consumer``: ``fleetpulse cdc``, the consumer group on the shared loop of
  ``ingest.consumer`` (``run_cdc``);
* ``tables``: the cache tables read in the seed's ``/api/sync`` shape; ``customers``: the
  read-through customer cache the api serves from (memory, Redis, PostgreSQL, MariaDB);
* ``lag``: per-table and Kafka lag, for ``/api/sync/lag``, health and ``cdc:lag``.

Position ingest shares only the consumer loop and the publisher with it.
"""

from ingest.cdc.consumer import run_cdc

__all__ = ["run_cdc"]
