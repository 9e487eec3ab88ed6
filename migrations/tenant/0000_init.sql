CREATE TABLE "core_permissions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_user_id" uuid NOT NULL,
	"resource" text NOT NULL,
	"action" text NOT NULL,
	"granted" boolean NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "projects" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"status" text DEFAULT 'active' NOT NULL,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "projects_status_ck" CHECK (status in ('active', 'archived'))
);
--> statement-breakpoint
CREATE TABLE "core_settings" (
	"id" uuid PRIMARY KEY NOT NULL,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"currency" text DEFAULT 'usd' NOT NULL,
	"feature_flags" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenant_jobs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_type" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"result" jsonb,
	"error_log" text,
	"retry_count" integer DEFAULT 0 NOT NULL,
	"max_retries" integer DEFAULT 3 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenant_jobs_status_ck" CHECK (status in ('pending', 'running', 'completed', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "core_tenant_users" (
	"id" uuid PRIMARY KEY NOT NULL,
	"global_user_id" uuid NOT NULL,
	"email" text NOT NULL,
	"name" text,
	"role" text DEFAULT 'viewer' NOT NULL,
	"preferences" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_tenant_users_role_ck" CHECK (role in ('admin', 'editor', 'viewer'))
);
--> statement-breakpoint
ALTER TABLE "core_permissions" ADD CONSTRAINT "core_permissions_tenant_user_id_core_tenant_users_id_fk" FOREIGN KEY ("tenant_user_id") REFERENCES "public"."core_tenant_users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "core_permissions_user_resource_action_uq" ON "core_permissions" USING btree ("tenant_user_id","resource","action");--> statement-breakpoint
CREATE INDEX "projects_created_idx" ON "projects" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "tenant_jobs_status_idx" ON "tenant_jobs" USING btree ("status","created_at");--> statement-breakpoint
CREATE INDEX "tenant_jobs_type_idx" ON "tenant_jobs" USING btree ("job_type","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenant_users_global_uq" ON "core_tenant_users" USING btree ("global_user_id");