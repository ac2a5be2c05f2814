-- Enrollment: restrictions, platform prerequisites, users and licences, the device CA.

ALTER TABLE enr_tenants ADD COLUMN device_limit_per_user INTEGER NOT NULL DEFAULT 5;

-- Per-platform enrollment restrictions; a platform without a row is allowed, personal
-- devices included.
CREATE TABLE enr_platform_restrictions (
    tenant_id        BYTEA   NOT NULL REFERENCES enr_tenants (id) ON DELETE CASCADE,
    platform         TEXT    NOT NULL,
    allowed          BOOLEAN NOT NULL,
    personal_allowed BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, platform)
);

-- The tenant's Apple MDM push certificate; the key is sealed with the secret key.
CREATE TABLE enr_apple_push_certificates (
    tenant_id          BYTEA  NOT NULL PRIMARY KEY REFERENCES enr_tenants (id) ON DELETE CASCADE,
    topic              TEXT   NOT NULL,
    serial_number      TEXT   NOT NULL,
    not_before         BIGINT NOT NULL,
    not_after          BIGINT NOT NULL,
    certificate_pem    TEXT   NOT NULL,
    sealed_private_key BYTEA  NOT NULL,
    uploaded_at        BIGINT NOT NULL,
    consented_by       TEXT   NOT NULL,
    consented_at       BIGINT NOT NULL
);

-- The tenant's Android Enterprise binding; the service-account key is sealed.
CREATE TABLE enr_android_bindings (
    tenant_id                  BYTEA  NOT NULL PRIMARY KEY REFERENCES enr_tenants (id) ON DELETE CASCADE,
    state                      TEXT   NOT NULL CHECK (state IN ('pendingSignup', 'bound')),
    enterprise_name            TEXT,
    signup_url_name            TEXT,
    sealed_service_account_key BYTEA  NOT NULL,
    pubsub_topic               TEXT,
    notification_types         TEXT   NOT NULL DEFAULT '[]',
    consented_by               TEXT   NOT NULL,
    consented_at               BIGINT NOT NULL,
    bound_at                   BIGINT
);

-- How Windows devices of the tenant enrol.
CREATE TABLE enr_windows_settings (
    tenant_id            BYTEA   NOT NULL PRIMARY KEY REFERENCES enr_tenants (id) ON DELETE CASCADE,
    automatic_enrollment BOOLEAN NOT NULL,
    auth_policy          TEXT    NOT NULL,
    bulk_secret_hash     BYTEA,
    bulk_thumbprints     TEXT    NOT NULL DEFAULT '[]',
    updated_at           BIGINT  NOT NULL
);

-- Directory users. Principal names are unique across tenants (Windows discovery finds
-- the tenant by the user's address).
CREATE TABLE enr_users (
    id                  BYTEA   NOT NULL PRIMARY KEY,
    tenant_id           BYTEA   NOT NULL REFERENCES enr_tenants (id) ON DELETE CASCADE,
    user_principal_name TEXT    NOT NULL,
    display_name        TEXT    NOT NULL,
    licensed            BOOLEAN NOT NULL,
    password_hash       TEXT,
    created_at          BIGINT  NOT NULL,
    licence_changed_at  BIGINT
);
CREATE UNIQUE INDEX enr_users_upn ON enr_users (lower(user_principal_name));
CREATE INDEX enr_users_tenant ON enr_users (tenant_id, id);

-- The device-identity CA (one row); its key is sealed.
CREATE TABLE enr_ca (
    id                 TEXT   NOT NULL PRIMARY KEY,
    certificate_der    BYTEA  NOT NULL,
    sealed_private_key BYTEA  NOT NULL,
    not_after          BIGINT NOT NULL,
    created_at         BIGINT NOT NULL
);

-- Every certificate the CA issued.
CREATE TABLE enr_issued_certificates (
    serial            TEXT   NOT NULL PRIMARY KEY,
    tenant_id         BYTEA  NOT NULL,
    device_id         BYTEA  NOT NULL,
    enrollment_id     BYTEA,
    subject           TEXT   NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    issued_at         BIGINT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT
);
CREATE INDEX enr_issued_certificates_device ON enr_issued_certificates (device_id);
CREATE INDEX enr_issued_certificates_not_after ON enr_issued_certificates (not_after);
