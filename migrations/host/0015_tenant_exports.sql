CREATE TABLE "core_tenant_exports" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"requested_by" uuid,
	"status" text DEFAULT 'pending' NOT NULL,
	"file_name" text,
	"size_bytes" integer,
	"error" text,
	"ready_at" timestamp with time zone,
	"downloaded_at" timestamp with time zone,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_tenant_exports_status_ck" CHECK (status in ('pending', 'running', 'ready', 'failed', 'downloaded', 'expired'))
);
--> statement-breakpoint
ALTER TABLE "core_tenant_exports" ADD CONSTRAINT "core_tenant_exports_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_tenant_exports" ADD CONSTRAINT "core_tenant_exports_requested_by_core_users_id_fk" FOREIGN KEY ("requested_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "core_tenant_exports_tenant_idx" ON "core_tenant_exports" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE INDEX "core_tenant_exports_expires_idx" ON "core_tenant_exports" USING btree ("status","expires_at");