-- Infrastructure tables of mdm-runtime, present in every service's database.

-- Transactional outbox: a message is written in the transaction of the change that
-- causes it, then delivered by the relay. Delivered messages are deleted; `dead` ones
-- stay for an operator.
CREATE TABLE rt_outbox (
    id              BIGSERIAL PRIMARY KEY,
    producer        TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    message_key     TEXT    NOT NULL UNIQUE,
    ordering_key    TEXT,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX rt_outbox_due ON rt_outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX rt_outbox_ordering ON rt_outbox (ordering_key, id)
    WHERE state = 'pending' AND ordering_key IS NOT NULL;

-- Receipts of applied messages: a receiver applies each message key once.
CREATE TABLE rt_inbox (
    receiver    TEXT   NOT NULL,
    message_key TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (receiver, message_key)
);
CREATE INDEX rt_inbox_received ON rt_inbox (received_at);

-- Leases for background jobs that one replica runs at a time.
CREATE TABLE rt_leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Answers to mutating API calls sent with an Idempotency-Key, replayed on a repeat.
CREATE TABLE rt_idempotency (
    scope         TEXT    NOT NULL,
    idem_key      TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status        INTEGER,
    content_type  TEXT,
    response_body BYTEA,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX rt_idempotency_created ON rt_idempotency (created_at);
