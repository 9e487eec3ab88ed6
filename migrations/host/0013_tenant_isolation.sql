DROP INDEX "core_tenants_db_name_uq";--> statement-breakpoint
ALTER TABLE "core_tenants" ADD COLUMN "isolation" text DEFAULT 'database' NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenants_db_name_uq" ON "core_tenants" USING btree ("db_name") WHERE isolation = 'database';--> statement-breakpoint
ALTER TABLE "core_tenants" ADD CONSTRAINT "core_tenants_isolation_ck" CHECK (isolation in ('database', 'shared'));