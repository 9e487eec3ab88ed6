CREATE TABLE "core_db_servers" (
	"name" text PRIMARY KEY NOT NULL,
	"admin_url_encrypted" text,
	"role" text DEFAULT 'dedicated' NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"capacity" integer,
	"max_connections" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_db_servers_role_ck" CHECK (role in ('shared', 'dedicated')),
	CONSTRAINT "core_db_servers_status_ck" CHECK (status in ('active', 'draining')),
	CONSTRAINT "core_db_servers_name_ck" CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
	CONSTRAINT "core_db_servers_url_ck" CHECK (name = 'default' or admin_url_encrypted is not null),
	CONSTRAINT "core_db_servers_capacity_ck" CHECK (capacity is null or capacity >= 0),
	CONSTRAINT "core_db_servers_max_connections_ck" CHECK (max_connections is null or max_connections >= 1)
);
--> statement-breakpoint
-- The server of the config (TENANT_DATABASE_URL, else DATABASE_URL): every existing tenant is on it.
INSERT INTO "core_db_servers" ("name", "role") VALUES ('default', 'shared') ON CONFLICT DO NOTHING;--> statement-breakpoint
ALTER TABLE "core_tenants" ADD COLUMN "server" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "core_tenants" ADD CONSTRAINT "core_tenants_server_core_db_servers_name_fk" FOREIGN KEY ("server") REFERENCES "public"."core_db_servers"("name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "core_tenants_server_idx" ON "core_tenants" USING btree ("server");