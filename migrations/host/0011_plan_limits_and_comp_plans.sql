ALTER TABLE "core_pricing_plans" ADD COLUMN "limits" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "core_tenants" ADD COLUMN "comp_plan_key" text;--> statement-breakpoint
ALTER TABLE "core_tenants" ADD COLUMN "comp_plan_expires_at" timestamp with time zone;