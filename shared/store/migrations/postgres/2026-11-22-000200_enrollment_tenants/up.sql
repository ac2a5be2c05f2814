-- Tenants and API tokens, owned by the enrollment service.

CREATE TABLE enr_tenants (
    id                   BYTEA  NOT NULL PRIMARY KEY,
    name                 TEXT   NOT NULL,
    mdm_authority        TEXT   NOT NULL DEFAULT 'none',
    authority_changed_at BIGINT,
    created_at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX enr_tenants_name ON enr_tenants (lower(name));

-- Bearer tokens. Only a SHA-256 hash of the secret is kept; operator tokens have no
-- tenant, `user` tokens name the user they act for.
CREATE TABLE enr_api_tokens (
    id          BYTEA  NOT NULL PRIMARY KEY,
    tenant_id   BYTEA  REFERENCES enr_tenants (id) ON DELETE CASCADE,
    role        TEXT   NOT NULL,
    user_id     BYTEA,
    description TEXT   NOT NULL,
    secret_hash BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    CHECK ((role = 'operator') = (tenant_id IS NULL))
);
CREATE INDEX enr_api_tokens_tenant ON enr_api_tokens (tenant_id);
