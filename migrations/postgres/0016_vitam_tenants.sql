-- The `/v1` facade (seed 002) names tenants by a number (`X-Tenant-Id`): every tenant
-- gets one, never reused, even after the tenant is deleted, so an old number can never
-- reach another tenant. A table of its own, since SQLite cannot add an autoincrement
-- column to an existing table.
CREATE TABLE vitam_tenants (
    vitam_id   BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL UNIQUE REFERENCES tenants (id) ON DELETE CASCADE
);

INSERT INTO vitam_tenants (tenant_id) SELECT id FROM tenants ORDER BY created_at, id;
