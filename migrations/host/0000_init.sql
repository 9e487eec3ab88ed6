CREATE TABLE "sys_audit_logs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"actor_user_id" uuid,
	"tenant_id" uuid,
	"action" text NOT NULL,
	"target_type" text,
	"target_id" text,
	"ip" text,
	"user_agent" text,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "core_memberships" (
	"id" uuid PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"tenant_id" uuid NOT NULL,
	"role" text DEFAULT 'member' NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_memberships_role_ck" CHECK (role in ('owner', 'admin', 'member')),
	CONSTRAINT "core_memberships_status_ck" CHECK (status in ('active', 'invited', 'suspended'))
);
--> statement-breakpoint
CREATE TABLE "core_pricing_plans" (
	"id" uuid PRIMARY KEY NOT NULL,
	"key" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"stripe_price_monthly" text,
	"stripe_price_yearly" text,
	"amount_monthly" integer,
	"amount_yearly" integer,
	"currency" text DEFAULT 'usd' NOT NULL,
	"trial_days" integer DEFAULT 30 NOT NULL,
	"features" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"tier_level" integer DEFAULT 0 NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"sort_order" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_pricing_plans_amounts_ck" CHECK (coalesce(amount_monthly, 0) >= 0 and coalesce(amount_yearly, 0) >= 0 and trial_days >= 0)
);
--> statement-breakpoint
CREATE TABLE "core_stripe_webhook_events" (
	"id" uuid PRIMARY KEY NOT NULL,
	"stripe_event_id" text NOT NULL,
	"type" text NOT NULL,
	"status" text NOT NULL,
	"api_version" text,
	"stripe_created_at" timestamp with time zone NOT NULL,
	"payload" jsonb NOT NULL,
	"error" text,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"processed_at" timestamp with time zone,
	CONSTRAINT "core_stripe_webhook_events_status_ck" CHECK (status in ('processed', 'skipped', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "core_subscriptions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"user_id" uuid,
	"plan_id" uuid,
	"stripe_subscription_id" text NOT NULL,
	"stripe_customer_id" text NOT NULL,
	"stripe_price_id" text,
	"status" text NOT NULL,
	"billing_interval" text,
	"current_period_start" timestamp with time zone,
	"current_period_end" timestamp with time zone,
	"trial_end" timestamp with time zone,
	"cancel_at_period_end" boolean DEFAULT false NOT NULL,
	"canceled_at" timestamp with time zone,
	"past_due_since" timestamp with time zone,
	"stripe_updated_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sys_jobs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_type" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"tenant_id" uuid,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"result" jsonb,
	"error_log" text,
	"retry_count" integer DEFAULT 0 NOT NULL,
	"max_retries" integer DEFAULT 3 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sys_jobs_status_ck" CHECK (status in ('pending', 'running', 'completed', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "core_tenants" (
	"id" uuid PRIMARY KEY NOT NULL,
	"slug" text NOT NULL,
	"name" text NOT NULL,
	"plan_tier" text DEFAULT 'free' NOT NULL,
	"status" text DEFAULT 'provisioning' NOT NULL,
	"db_name" text NOT NULL,
	"db_url_encrypted" text NOT NULL,
	"pooler_url_encrypted" text,
	"max_connections" integer,
	"migration_version" text,
	"migration_status" text DEFAULT 'pending' NOT NULL,
	"migration_error" text,
	"migrated_at" timestamp with time zone,
	"provision_step" text,
	"provision_error" text,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp with time zone,
	CONSTRAINT "core_tenants_status_ck" CHECK (status in ('provisioning', 'active', 'suspended', 'failed', 'deleted')),
	CONSTRAINT "core_tenants_migration_status_ck" CHECK (migration_status in ('pending', 'running', 'current', 'failed')),
	CONSTRAINT "core_tenants_slug_ck" CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$'),
	CONSTRAINT "core_tenants_max_connections_ck" CHECK (max_connections is null or max_connections between 1 and 100)
);
--> statement-breakpoint
CREATE TABLE "core_users" (
	"id" uuid PRIMARY KEY NOT NULL,
	"email" text NOT NULL,
	"name" text,
	"password_hash" text,
	"google_id" text,
	"email_verified_at" timestamp with time zone,
	"stripe_customer_id" text,
	"last_login_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "core_memberships" ADD CONSTRAINT "core_memberships_user_id_core_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."core_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_memberships" ADD CONSTRAINT "core_memberships_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_subscriptions" ADD CONSTRAINT "core_subscriptions_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_subscriptions" ADD CONSTRAINT "core_subscriptions_user_id_core_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_subscriptions" ADD CONSTRAINT "core_subscriptions_plan_id_core_pricing_plans_id_fk" FOREIGN KEY ("plan_id") REFERENCES "public"."core_pricing_plans"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_tenants" ADD CONSTRAINT "core_tenants_created_by_core_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sys_audit_logs_tenant_idx" ON "sys_audit_logs" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE INDEX "sys_audit_logs_actor_idx" ON "sys_audit_logs" USING btree ("actor_user_id","created_at");--> statement-breakpoint
CREATE INDEX "sys_audit_logs_action_idx" ON "sys_audit_logs" USING btree ("action","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "core_memberships_user_tenant_uq" ON "core_memberships" USING btree ("user_id","tenant_id");--> statement-breakpoint
CREATE INDEX "core_memberships_tenant_idx" ON "core_memberships" USING btree ("tenant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "core_pricing_plans_key_uq" ON "core_pricing_plans" USING btree ("key");--> statement-breakpoint
CREATE UNIQUE INDEX "core_stripe_webhook_events_event_uq" ON "core_stripe_webhook_events" USING btree ("stripe_event_id");--> statement-breakpoint
CREATE INDEX "core_stripe_webhook_events_type_idx" ON "core_stripe_webhook_events" USING btree ("type","received_at");--> statement-breakpoint
CREATE UNIQUE INDEX "core_subscriptions_stripe_id_uq" ON "core_subscriptions" USING btree ("stripe_subscription_id");--> statement-breakpoint
CREATE INDEX "core_subscriptions_tenant_idx" ON "core_subscriptions" USING btree ("tenant_id");--> statement-breakpoint
CREATE INDEX "sys_jobs_status_idx" ON "sys_jobs" USING btree ("status","created_at");--> statement-breakpoint
CREATE INDEX "sys_jobs_type_idx" ON "sys_jobs" USING btree ("job_type","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenants_slug_uq" ON "core_tenants" USING btree ("slug");--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenants_db_name_uq" ON "core_tenants" USING btree ("db_name");--> statement-breakpoint
CREATE INDEX "core_tenants_status_idx" ON "core_tenants" USING btree ("status");--> statement-breakpoint
CREATE INDEX "core_tenants_migration_idx" ON "core_tenants" USING btree ("migration_status","migration_version");--> statement-breakpoint
CREATE UNIQUE INDEX "core_users_email_lower_uq" ON "core_users" USING btree (lower("email"));--> statement-breakpoint
CREATE UNIQUE INDEX "core_users_google_id_uq" ON "core_users" USING btree ("google_id");--> statement-breakpoint
CREATE UNIQUE INDEX "core_users_stripe_customer_uq" ON "core_users" USING btree ("stripe_customer_id");