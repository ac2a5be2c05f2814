-- Tables of mdm-inventory: the managed-device registry, directory records, clean-up
-- settings, Autopilot registrations and device groups.

-- One row per managed device. The id is the DeviceId the adapter minted at enrollment
-- (UUIDv7, so id order is enrollment order). Check-ins update `last_sync_at` in batches.
-- A fill factor below 100 leaves room on each page for updated rows.
CREATE TABLE inv_devices (
    id                              BYTEA   NOT NULL PRIMARY KEY,
    tenant_id                       BYTEA   NOT NULL,
    enrollment_id                   BYTEA   NOT NULL,
    platform                        TEXT    NOT NULL,
    os_version                      TEXT,
    ownership                       TEXT    NOT NULL,
    management_mode                 TEXT,
    management_state                TEXT    NOT NULL,
    user_id                         BYTEA,
    user_principal_name             TEXT,
    device_name                     TEXT,
    model                           TEXT,
    manufacturer                    TEXT,
    serial_number                   TEXT,
    imei                            TEXT,
    is_passcode_present             BOOLEAN,
    is_supervised                   BOOLEAN,
    is_encrypted                    BOOLEAN,
    directory_joined                BOOLEAN NOT NULL,
    identity_certificate_expires_at BIGINT,
    enrolled_at                     BIGINT  NOT NULL,
    last_sync_at                    BIGINT,
    state_changed_at                BIGINT  NOT NULL,
    updated_at                      BIGINT  NOT NULL
) WITH (fillfactor = 90);
-- The list: keyset pages in id order within a tenant, with or without one filter.
-- `last_sync_at` is in no index, so that a check-in (which changes only that column)
-- is a heap-only update that touches no index; `lastSyncBefore` and the inactivity rule
-- read it from the rows their tenant's index scan finds.
CREATE INDEX inv_devices_tenant ON inv_devices (tenant_id, id);
CREATE INDEX inv_devices_platform ON inv_devices (tenant_id, platform, id);
CREATE INDEX inv_devices_state ON inv_devices (tenant_id, management_state, id);
CREATE INDEX inv_devices_user ON inv_devices (tenant_id, user_id, id);
CREATE INDEX inv_devices_upn ON inv_devices (tenant_id, lower(user_principal_name), id);
-- Deletes that the device never completed (the clean-up's fallback); a small index, as
-- few devices are in that state.
CREATE INDEX inv_devices_delete_pending ON inv_devices (id)
    WHERE management_state = 'deletePending';
-- The certificate clean-up.
CREATE INDEX inv_devices_certificate ON inv_devices (identity_certificate_expires_at)
    WHERE identity_certificate_expires_at IS NOT NULL;
-- Autopilot registrations find their device by serial number.
CREATE INDEX inv_devices_serial ON inv_devices (tenant_id, serial_number)
    WHERE serial_number IS NOT NULL;

-- A device's record in the directory, separate from management: it exists from
-- enrollment on and is what a user's device limit counts. Deleting it leaves the
-- managed device alone.
CREATE TABLE inv_directory_records (
    id           BYTEA  NOT NULL PRIMARY KEY,
    tenant_id    BYTEA  NOT NULL,
    device_id    BYTEA,
    user_id      BYTEA,
    display_name TEXT,
    platform     TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX inv_directory_records_tenant ON inv_directory_records (tenant_id, id);
CREATE INDEX inv_directory_records_user ON inv_directory_records (tenant_id, user_id);
CREATE UNIQUE INDEX inv_directory_records_device ON inv_directory_records (device_id);

-- The tenant's inactivity rule: off (NULL) or 90 to 270 days.
CREATE TABLE inv_cleanup_settings (
    tenant_id       BYTEA   NOT NULL PRIMARY KEY,
    inactivity_days INTEGER CHECK (inactivity_days BETWEEN 90 AND 270),
    updated_at      BIGINT  NOT NULL
);

-- Windows Autopilot registrations (hardware hashes). A registration is pending until
-- `registered_at`; it names the managed device with the same serial number, if any.
CREATE TABLE inv_autopilot_registrations (
    id                  BYTEA  NOT NULL PRIMARY KEY,
    tenant_id           BYTEA  NOT NULL,
    serial_number       TEXT   NOT NULL,
    hardware_identifier TEXT   NOT NULL,
    group_tag           TEXT,
    device_id           BYTEA,
    created_at          BIGINT NOT NULL,
    registered_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX inv_autopilot_registrations_serial
    ON inv_autopilot_registrations (tenant_id, serial_number);
CREATE INDEX inv_autopilot_registrations_tenant ON inv_autopilot_registrations (tenant_id, id);
CREATE INDEX inv_autopilot_registrations_device ON inv_autopilot_registrations (device_id);

-- Device groups and their members.
CREATE TABLE inv_groups (
    id           BYTEA  NOT NULL PRIMARY KEY,
    tenant_id    BYTEA  NOT NULL,
    display_name TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX inv_groups_tenant ON inv_groups (tenant_id, id);

CREATE TABLE inv_group_members (
    group_id  BYTEA  NOT NULL REFERENCES inv_groups (id) ON DELETE CASCADE,
    device_id BYTEA  NOT NULL,
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX inv_group_members_device ON inv_group_members (device_id);
