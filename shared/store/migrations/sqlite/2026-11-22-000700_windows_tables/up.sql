-- Tables of the Windows adapter (mdm-windows).

-- One enrollment of a Windows device (MS-MDE2). A device that enrols again keeps its
-- DeviceId and gets a new enrollment; the old one ends as `replaced`.
CREATE TABLE win_enrollments (
    id                  BLOB    NOT NULL PRIMARY KEY,
    device_id           BLOB    NOT NULL,
    tenant_id           BLOB    NOT NULL,
    user_id             BLOB,
    user_principal_name TEXT,
    -- The DeviceID the client reported (CSR extension / AdditionalContext); the SyncML
    -- SyncHdr Source of every session must name it.
    windows_device_id   TEXT    NOT NULL,
    hw_device_id        TEXT,
    device_type         TEXT    NOT NULL,
    os_edition          INTEGER,
    os_version          TEXT,
    management_mode     TEXT    NOT NULL,
    ownership           TEXT    NOT NULL,
    enrollment_type     TEXT    NOT NULL,
    directory_joined    BOOLEAN NOT NULL,
    auth_method         TEXT    NOT NULL,
    -- active, unenrolled, retired, wiped, removed, replaced
    state               TEXT    NOT NULL,
    channel_uri         TEXT,
    channel_state       TEXT,
    -- The facts last reported to inventory (JSON), so that only changes are sent.
    last_facts          TEXT,
    inventory_at        BIGINT,
    enrolled_at         BIGINT  NOT NULL,
    ended_at            BIGINT
);
CREATE INDEX win_enrollments_device ON win_enrollments (device_id);
CREATE INDEX win_enrollments_windows_device ON win_enrollments (tenant_id, windows_device_id);

-- Client certificates issued to enrollments, found by the SHA-256 of their DER.
CREATE TABLE win_certificates (
    sha256        BLOB   NOT NULL PRIMARY KEY,
    enrollment_id BLOB   NOT NULL REFERENCES win_enrollments (id) ON DELETE CASCADE,
    serial        TEXT   NOT NULL,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    issued_at     BIGINT NOT NULL,
    -- Set when a renewed certificate has been used, or the enrollment ended.
    revoked_at    BIGINT
);
CREATE INDEX win_certificates_enrollment ON win_certificates (enrollment_id);

-- OMA-DM commands queued for devices. The id is the SyncML CmdID the command is sent
-- with, so that a Status finds its command on any replica.
CREATE TABLE win_commands (
    id            BLOB    NOT NULL PRIMARY KEY,
    device_id     BLOB    NOT NULL,
    action_id     BLOB,
    kind          TEXT    NOT NULL,
    step          INTEGER NOT NULL,
    last_step     BOOLEAN NOT NULL,
    verb          TEXT    NOT NULL,
    loc_uri       TEXT    NOT NULL,
    data          TEXT,
    meta_format   TEXT,
    priority      BOOLEAN NOT NULL,
    -- queued, delivered, done, failed, notSupported, canceled, expired
    state         TEXT    NOT NULL,
    status_code   TEXT,
    sealed_result BLOB,
    expires_at    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    delivered_at  BIGINT,
    completed_at  BIGINT
);
CREATE INDEX win_commands_device ON win_commands (device_id, state);
CREATE INDEX win_commands_open ON win_commands (expires_at) WHERE state IN ('queued', 'delivered');
CREATE INDEX win_commands_action ON win_commands (action_id);
CREATE INDEX win_commands_created ON win_commands (created_at);
