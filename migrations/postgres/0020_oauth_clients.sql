-- OAuth2 clients (client credentials): a client's secret is kept as its SHA-256 only, as
-- API tokens are. A revoked client's access tokens stop working.
CREATE TABLE oauth_clients (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id   TEXT REFERENCES projects (id) ON DELETE CASCADE,
    name         TEXT,
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- Keys the service generates once and every replica shares (the access tokens' signing
-- key), sealed like every stored secret.
CREATE TABLE service_keys (
    name        TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
