-- Replays of dead letters: Kafka records are immutable, so who replayed what is kept here.
CREATE TABLE dead_letter_replays (
    topic           text NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    tenant_id       text NOT NULL,
    replayed_by     uuid,
    replayed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset", replayed_at)
);
