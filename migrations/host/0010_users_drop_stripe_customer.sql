-- Stripe customers belong to tenants (core_tenants.stripe_customer_id, created on first checkout): the per-user column was never written.
DROP INDEX "core_users_stripe_customer_uq";--> statement-breakpoint
ALTER TABLE "core_users" DROP COLUMN "stripe_customer_id";