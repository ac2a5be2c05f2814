-- The Android adapter's tables (mdm-android).

-- A tenant's Android Enterprise as this adapter set it up. The service-account key is
-- the enrollment service's (sealed there); it is fetched when needed, never stored here.
CREATE TABLE and_enterprises (
    tenant_id          BYTEA  NOT NULL PRIMARY KEY,
    enterprise_name    TEXT   NOT NULL,
    project_id         TEXT,
    display_name       TEXT,
    pubsub_topic       TEXT,
    -- Space-separated AMAPI notification types.
    notification_types TEXT   NOT NULL,
    default_policy     TEXT   NOT NULL,
    upgraded_at        BIGINT,
    bound_at           BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX and_enterprises_name ON and_enterprises (enterprise_name);

-- Enrollment tokens created through the admin API. The token value is not kept.
CREATE TABLE and_enrollment_tokens (
    id          BYTEA  NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    tenant_id   BYTEA  NOT NULL,
    profile     TEXT   NOT NULL,
    user_id     BYTEA,
    policy_name TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX and_enrollment_tokens_name ON and_enrollment_tokens (name);
CREATE INDEX and_enrollment_tokens_tenant ON and_enrollment_tokens (tenant_id, created_at);

-- AMAPI devices and our ids for them. `state`: enrolling (waiting for the gate),
-- managed, deleting (devices.delete to send), removed, refused. Work for the worker is
-- due at `next_attempt_at` and claimed with `lease_until`.
CREATE TABLE and_devices (
    device_id             BYTEA  NOT NULL PRIMARY KEY,
    tenant_id             BYTEA  NOT NULL,
    enrollment_id         BYTEA  NOT NULL,
    amapi_name            TEXT   NOT NULL,
    management_mode       TEXT   NOT NULL,
    ownership             TEXT   NOT NULL,
    user_id               BYTEA,
    enrollment_token_name TEXT,
    state                 TEXT   NOT NULL,
    api_level             INTEGER,
    facts                 TEXT,
    facts_hash            TEXT,
    last_report_at        BIGINT,
    seen_at               BIGINT,
    seen_sent_at          BIGINT,
    attempts              INTEGER NOT NULL DEFAULT 0,
    next_attempt_at       BIGINT,
    lease_until           BIGINT,
    last_error            TEXT,
    enrolled_at           BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX and_devices_amapi_name ON and_devices (amapi_name);
CREATE INDEX and_devices_due ON and_devices (state, next_attempt_at);
CREATE INDEX and_devices_tenant ON and_devices (tenant_id, state);
CREATE INDEX and_devices_seen ON and_devices (seen_at);

-- Actions from dispatch and where each stands with AMAPI. `phase`: queued, issued,
-- cancelRequested, then an outcome (done, failed, notSupported, canceled, expired).
CREATE TABLE and_actions (
    action_id          BYTEA   NOT NULL PRIMARY KEY,
    tenant_id          BYTEA   NOT NULL,
    device_id          BYTEA   NOT NULL,
    kind               TEXT    NOT NULL,
    phase              TEXT    NOT NULL,
    params             TEXT    NOT NULL,
    sealed_passcode    BYTEA,
    operation_name     TEXT,
    priority           BOOLEAN NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT  NOT NULL,
    lease_until        BIGINT,
    attempt_started_at BIGINT,
    last_error         TEXT,
    expires_at         BIGINT  NOT NULL,
    requested_at       BIGINT  NOT NULL,
    issued_at          BIGINT,
    news_at            BIGINT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);
CREATE INDEX and_actions_due ON and_actions (phase, next_attempt_at);
CREATE INDEX and_actions_device ON and_actions (device_id, created_at);
CREATE UNIQUE INDEX and_actions_operation ON and_actions (operation_name);

-- Pub/Sub messages already handled (Pub/Sub delivers at least once).
CREATE TABLE and_pubsub_receipts (
    message_id        TEXT   NOT NULL PRIMARY KEY,
    notification_type TEXT   NOT NULL,
    outcome           TEXT   NOT NULL,
    received_at       BIGINT NOT NULL
);
CREATE INDEX and_pubsub_receipts_received ON and_pubsub_receipts (received_at);

-- COMMAND notifications that arrived before issueCommand's answer was recorded (a fast
-- device): applied when the operation's action is recorded.
CREATE TABLE and_early_operations (
    operation_name TEXT   NOT NULL PRIMARY KEY,
    payload        TEXT   NOT NULL,
    received_at    BIGINT NOT NULL
);
CREATE INDEX and_early_operations_received ON and_early_operations (received_at);
