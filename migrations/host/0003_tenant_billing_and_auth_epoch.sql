ALTER TABLE "core_tenants" ADD COLUMN "stripe_customer_id" text;--> statement-breakpoint
ALTER TABLE "core_users" ADD COLUMN "is_platform_admin" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "core_users" ADD COLUMN "sessions_valid_after" timestamp with time zone;--> statement-breakpoint
CREATE UNIQUE INDEX "core_tenants_stripe_customer_uq" ON "core_tenants" USING btree ("stripe_customer_id");