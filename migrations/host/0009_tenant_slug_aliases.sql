CREATE TABLE "core_tenant_slug_aliases" (
	"slug" text PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "core_tenant_slug_aliases" ADD CONSTRAINT "core_tenant_slug_aliases_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "core_tenant_slug_aliases_tenant_idx" ON "core_tenant_slug_aliases" USING btree ("tenant_id");