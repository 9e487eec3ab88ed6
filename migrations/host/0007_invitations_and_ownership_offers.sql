CREATE TABLE "core_invitations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"email" text NOT NULL,
	"role" text NOT NULL,
	"local_role" text NOT NULL,
	"token_hash" text NOT NULL,
	"invited_by" uuid,
	"expires_at" timestamp with time zone NOT NULL,
	"sent_at" timestamp with time zone DEFAULT now() NOT NULL,
	"accepted_at" timestamp with time zone,
	"accepted_by" uuid,
	"revoked_at" timestamp with time zone,
	"revoked_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_invitations_role_ck" CHECK (role in ('admin', 'member')),
	CONSTRAINT "core_invitations_local_role_ck" CHECK (local_role in ('admin', 'editor', 'viewer')),
	CONSTRAINT "core_invitations_token_hash_ck" CHECK (token_hash ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "core_invitations_closed_once_ck" CHECK (accepted_at is null or revoked_at is null)
);
--> statement-breakpoint
CREATE TABLE "core_ownership_offers" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"offered_by" uuid,
	"expires_at" timestamp with time zone NOT NULL,
	"accepted_at" timestamp with time zone,
	"canceled_at" timestamp with time zone,
	"canceled_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_ownership_offers_closed_once_ck" CHECK (accepted_at is null or canceled_at is null)
);
--> statement-breakpoint
ALTER TABLE "core_invitations" ADD CONSTRAINT "core_invitations_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_invitations" ADD CONSTRAINT "core_invitations_invited_by_core_users_id_fk" FOREIGN KEY ("invited_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_invitations" ADD CONSTRAINT "core_invitations_accepted_by_core_users_id_fk" FOREIGN KEY ("accepted_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_invitations" ADD CONSTRAINT "core_invitations_revoked_by_core_users_id_fk" FOREIGN KEY ("revoked_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_ownership_offers" ADD CONSTRAINT "core_ownership_offers_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_ownership_offers" ADD CONSTRAINT "core_ownership_offers_user_id_core_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."core_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_ownership_offers" ADD CONSTRAINT "core_ownership_offers_offered_by_core_users_id_fk" FOREIGN KEY ("offered_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_ownership_offers" ADD CONSTRAINT "core_ownership_offers_canceled_by_core_users_id_fk" FOREIGN KEY ("canceled_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "core_invitations_token_hash_uq" ON "core_invitations" USING btree ("token_hash");--> statement-breakpoint
CREATE UNIQUE INDEX "core_invitations_pending_uq" ON "core_invitations" USING btree ("tenant_id",lower("email")) WHERE accepted_at is null and revoked_at is null;--> statement-breakpoint
CREATE INDEX "core_invitations_tenant_idx" ON "core_invitations" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "core_ownership_offers_open_uq" ON "core_ownership_offers" USING btree ("tenant_id","user_id") WHERE accepted_at is null and canceled_at is null;--> statement-breakpoint
CREATE INDEX "core_ownership_offers_tenant_idx" ON "core_ownership_offers" USING btree ("tenant_id","id");