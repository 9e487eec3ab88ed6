CREATE TABLE "core_admin_api_keys" (
	"id" uuid PRIMARY KEY NOT NULL,
	"created_by" uuid NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"key_hash" text NOT NULL,
	"last_used_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_admin_api_keys_key_hash_ck" CHECK (key_hash ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
ALTER TABLE "sys_audit_logs" ADD COLUMN "actor_api_key_id" uuid;--> statement-breakpoint
ALTER TABLE "core_admin_api_keys" ADD CONSTRAINT "core_admin_api_keys_created_by_core_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."core_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "core_admin_api_keys_key_hash_uq" ON "core_admin_api_keys" USING btree ("key_hash");--> statement-breakpoint
CREATE INDEX "core_admin_api_keys_created_by_idx" ON "core_admin_api_keys" USING btree ("created_by");