-- Dispatch: remote actions, bulk jobs, the audit trail.

-- One action on one device. Ids are time-ordered, so id order is creation order.
CREATE TABLE dsp_actions (
    id                BYTEA   NOT NULL PRIMARY KEY,
    tenant_id         BYTEA   NOT NULL,
    device_id         BYTEA   NOT NULL,
    device_name       TEXT,
    platform          TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    -- ActionParams as JSON, without the PIN.
    params            TEXT    NOT NULL,
    priority          BOOLEAN NOT NULL,
    requested_by      TEXT    NOT NULL,
    self_service      BOOLEAN NOT NULL,
    bulk_job_id       BYTEA,
    -- A Mac's unlock PIN, sealed; purged once it stops being shown.
    sealed_unlock_pin BYTEA,
    pin_expires_at    BIGINT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
    error_code        TEXT,
    error_detail      TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL
);
CREATE INDEX dsp_actions_device ON dsp_actions (device_id, id);
CREATE INDEX dsp_actions_tenant ON dsp_actions (tenant_id, id);
CREATE INDEX dsp_actions_open ON dsp_actions (expires_at) WHERE state IN ('pending', 'sent', 'active');
CREATE INDEX dsp_actions_pins ON dsp_actions (pin_expires_at) WHERE sealed_unlock_pin IS NOT NULL;
CREATE INDEX dsp_actions_bulk ON dsp_actions (bulk_job_id) WHERE bulk_job_id IS NOT NULL;

-- A bulk action over many devices.
CREATE TABLE dsp_bulk_jobs (
    id           BYTEA   NOT NULL PRIMARY KEY,
    tenant_id    BYTEA   NOT NULL,
    kind         TEXT    NOT NULL,
    params       TEXT    NOT NULL,
    -- The device filter (JSON) when the job was given one instead of ids.
    filter       TEXT,
    requested_by TEXT    NOT NULL,
    actor_role   TEXT,
    state        TEXT    NOT NULL CHECK (state IN ('accepted', 'running', 'completed')),
    total        INTEGER NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    completed_at BIGINT
);
CREATE INDEX dsp_bulk_jobs_open ON dsp_bulk_jobs (created_at) WHERE state <> 'completed';
CREATE INDEX dsp_bulk_jobs_tenant ON dsp_bulk_jobs (tenant_id, id);

-- The devices of a bulk job and what became of each.
CREATE TABLE dsp_bulk_targets (
    job_id         BYTEA NOT NULL REFERENCES dsp_bulk_jobs (id) ON DELETE CASCADE,
    device_id      BYTEA NOT NULL,
    outcome        TEXT  NOT NULL CHECK (outcome IN ('pending', 'accepted', 'refused')),
    refusal_code   TEXT,
    refusal_detail TEXT,
    PRIMARY KEY (job_id, device_id)
);
CREATE INDEX dsp_bulk_targets_pending ON dsp_bulk_targets (job_id) WHERE outcome = 'pending';

-- Who changed what through the API, from every service.
CREATE TABLE dsp_audit_events (
    id          BYTEA  NOT NULL PRIMARY KEY,
    tenant_id   BYTEA,
    actor       TEXT   NOT NULL,
    actor_role  TEXT,
    activity    TEXT   NOT NULL,
    target_type TEXT   NOT NULL,
    target_id   TEXT   NOT NULL,
    device_id   BYTEA,
    outcome     TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    remote_addr TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX dsp_audit_events_tenant ON dsp_audit_events (tenant_id, id);
