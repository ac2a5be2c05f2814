-- Tables of mdm-apple: enrollment profiles and issued identities, enrollments (one row
-- per MDM channel), device facts, the per-channel command queue, command results,
-- actions in progress, and the SCEP RA key.

-- An enrollment profile (.mobileconfig) handed out once at a one-time URL. It fixes the
-- tenant, owner and user of the device that installs it, and carries a one-time SCEP
-- challenge. Only hashes of the URL token and the challenge are stored.
CREATE TABLE apl_enrollment_profiles (
    id                BYTEA   NOT NULL PRIMARY KEY,
    tenant_id         BYTEA   NOT NULL,
    device_id         BYTEA   NOT NULL,
    ownership         TEXT    NOT NULL,
    user_id           BYTEA,
    platform          TEXT,
    identity          TEXT    NOT NULL CHECK (identity IN ('scep', 'pkcs12')),
    token_hash        BYTEA   NOT NULL UNIQUE,
    challenge_hash    BYTEA   UNIQUE,
    created_by        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    downloaded_at     BIGINT,
    challenge_used_at BIGINT
);
CREATE INDEX apl_enrollment_profiles_tenant ON apl_enrollment_profiles (tenant_id, created_at);

-- Identity certificates issued through this adapter (SCEP or PKCS#12), by SHA-256 of
-- the DER certificate: at Authenticate they name the profile the device enrols with.
CREATE TABLE apl_identities (
    cert_hash  BYTEA  NOT NULL PRIMARY KEY,
    profile_id BYTEA  NOT NULL,
    tenant_id  BYTEA  NOT NULL,
    device_id  BYTEA  NOT NULL,
    serial     TEXT   NOT NULL,
    not_after  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL
);

-- One row per MDM channel: a device channel (keyed by UDID, or by EnrollmentID for user
-- enrollment) or a macOS user channel (UDID:UserID). The device channel holds the bound
-- identity certificate (its SHA-256).
CREATE TABLE apl_enrollments (
    channel_id             TEXT    NOT NULL PRIMARY KEY,
    device_channel         TEXT    NOT NULL,
    user_enrollment        BOOLEAN NOT NULL,
    tenant_id              BYTEA   NOT NULL,
    device_id              BYTEA   NOT NULL,
    enrollment_id          BYTEA   NOT NULL,
    profile_id             BYTEA,
    platform               TEXT    NOT NULL,
    ownership              TEXT    NOT NULL,
    user_id                BYTEA,
    user_principal_name    TEXT,
    state                  TEXT    NOT NULL,
    cert_hash              BYTEA,
    cert_subject           TEXT,
    cert_not_after         BIGINT,
    topic                  TEXT    NOT NULL,
    push_token             BYTEA,
    push_magic             TEXT,
    push_state             TEXT    NOT NULL,
    push_error             TEXT,
    sealed_unlock_token    BYTEA,
    sealed_bootstrap_token BYTEA,
    user_guid              TEXT,
    user_short_name        TEXT,
    awaiting_configuration BOOLEAN NOT NULL,
    authenticated_at       BIGINT  NOT NULL,
    enrolled_at            BIGINT,
    ended_at               BIGINT,
    inventory_at           BIGINT,
    updated_at             BIGINT  NOT NULL
);
CREATE UNIQUE INDEX apl_enrollments_cert ON apl_enrollments (cert_hash) WHERE cert_hash IS NOT NULL;
CREATE INDEX apl_enrollments_device ON apl_enrollments (device_id);
CREATE INDEX apl_enrollments_device_channel ON apl_enrollments (device_channel);

-- What the device reported about itself (check-in messages and inventory queries).
CREATE TABLE apl_device_info (
    channel_id          TEXT    NOT NULL PRIMARY KEY,
    udid                TEXT,
    serial_number       TEXT,
    imei                TEXT,
    meid                TEXT,
    model               TEXT,
    model_name          TEXT,
    product_name        TEXT,
    device_name         TEXT,
    os_version          TEXT,
    build_version       TEXT,
    is_supervised       BOOLEAN,
    passcode_present    BOOLEAN,
    profiles            TEXT,
    managed_apps        TEXT,
    installed_app_count INTEGER,
    updated_at          BIGINT  NOT NULL
);

-- The command queue: commands not yet answered. `id` orders them; priority commands
-- (lock, wipe) go first. `state` is queued or sent (delivered, waiting for the answer).
CREATE TABLE apl_commands (
    id           BIGSERIAL PRIMARY KEY,
    command_uuid TEXT    NOT NULL UNIQUE,
    channel_id   TEXT    NOT NULL,
    request_type TEXT    NOT NULL,
    payload      BYTEA   NOT NULL,
    priority     BOOLEAN NOT NULL,
    purpose      TEXT    NOT NULL,
    action_id    BYTEA,
    state        TEXT    NOT NULL CHECK (state IN ('queued', 'sent')),
    attempts     INTEGER NOT NULL,
    created_at   BIGINT  NOT NULL,
    sent_at      BIGINT,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX apl_commands_channel ON apl_commands (channel_id, id);
CREATE INDEX apl_commands_action ON apl_commands (action_id) WHERE action_id IS NOT NULL;
CREATE INDEX apl_commands_expiry ON apl_commands (expires_at);

-- Answers to commands (and commands that expired or were canceled), kept for
-- `result_retention_days`.
CREATE TABLE apl_command_results (
    command_uuid TEXT   NOT NULL PRIMARY KEY,
    channel_id   TEXT   NOT NULL,
    request_type TEXT   NOT NULL,
    action_id    BYTEA,
    status       TEXT   NOT NULL,
    error_chain  TEXT,
    result       BYTEA,
    completed_at BIGINT NOT NULL
);
CREATE INDEX apl_command_results_channel ON apl_command_results (channel_id, completed_at);
CREATE INDEX apl_command_results_completed ON apl_command_results (completed_at);

-- Remote actions from dispatch while they run here (one action may take several
-- commands: retire), and for a while after they ended.
CREATE TABLE apl_actions (
    action_id  BYTEA  NOT NULL PRIMARY KEY,
    channel_id TEXT   NOT NULL,
    device_id  BYTEA  NOT NULL,
    kind       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX apl_actions_channel ON apl_actions (channel_id);
CREATE INDEX apl_actions_updated ON apl_actions (updated_at);

-- The SCEP registration authority's key pair (the key sealed with the secret key).
CREATE TABLE apl_scep_ra (
    name        TEXT   NOT NULL PRIMARY KEY,
    certificate BYTEA  NOT NULL,
    sealed_key  BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);
