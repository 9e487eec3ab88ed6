CREATE TABLE "core_tenant_moves" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"state" text DEFAULT 'running' NOT NULL,
	"step" text DEFAULT 'mark' NOT NULL,
	"from_isolation" text NOT NULL,
	"from_server" text,
	"from_db_name" text NOT NULL,
	"from_db_url_encrypted" text NOT NULL,
	"to_isolation" text NOT NULL,
	"to_server" text,
	"to_db_name" text NOT NULL,
	"to_db_url_encrypted" text NOT NULL,
	"verified" jsonb,
	"rows_copied" integer,
	"job_id" uuid,
	"requested_by" uuid,
	"error" text,
	"marked_at" timestamp with time zone,
	"switched_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "core_tenant_moves_state_ck" CHECK (state in ('running', 'done', 'failed')),
	CONSTRAINT "core_tenant_moves_step_ck" CHECK (step in ('mark', 'prepare', 'copy', 'verify', 'switch', 'cleanup', 'clear', 'done')),
	CONSTRAINT "core_tenant_moves_from_isolation_ck" CHECK (from_isolation in ('database', 'shared')),
	CONSTRAINT "core_tenant_moves_to_isolation_ck" CHECK (to_isolation in ('database', 'shared'))
);
--> statement-breakpoint
ALTER TABLE "core_tenants" ADD COLUMN "moving_since" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "core_tenant_moves" ADD CONSTRAINT "core_tenant_moves_tenant_id_core_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."core_tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "core_tenant_moves" ADD CONSTRAINT "core_tenant_moves_requested_by_core_users_id_fk" FOREIGN KEY ("requested_by") REFERENCES "public"."core_users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenant_moves_open_uq" ON "core_tenant_moves" USING btree ("tenant_id") WHERE state = 'running';--> statement-breakpoint
CREATE INDEX "core_tenant_moves_tenant_idx" ON "core_tenant_moves" USING btree ("tenant_id","id");