-- Runs once, when the postgres container initialises an empty data volume (docker-entrypoint-initdb.d).
-- The app never connects as a superuser: it gets its own login role, allowed to create the tenant
-- databases, and owns the host database. The password is for the local compose stack only; a real
-- deployment creates the role with its own secret (or uses `db:setup` with DATABASE_ADMIN_URL).
CREATE ROLE tenantkit LOGIN CREATEDB PASSWORD 'tenantkit';
CREATE DATABASE tenantkit OWNER tenantkit;
