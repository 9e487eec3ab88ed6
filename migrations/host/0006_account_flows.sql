CREATE TABLE "core_user_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"purpose" text NOT NULL,
	"token_hash" text NOT NULL,
	"email" text NOT NULL,
	"new_email" text,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_user_tokens_purpose_ck" CHECK (purpose in ('verify_email', 'password_reset', 'email_change')),
	CONSTRAINT "core_user_tokens_hash_ck" CHECK (token_hash ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
ALTER TABLE "core_users" ADD COLUMN "sessions_revoked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "core_users" ADD COLUMN "active_tenant_id" uuid;--> statement-breakpoint
ALTER TABLE "core_users" ADD COLUMN "deleted_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "core_user_tokens" ADD CONSTRAINT "core_user_tokens_user_id_core_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."core_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "core_user_tokens_hash_uq" ON "core_user_tokens" USING btree ("token_hash");--> statement-breakpoint
CREATE INDEX "core_user_tokens_user_idx" ON "core_user_tokens" USING btree ("user_id","purpose");