CREATE TABLE "core_outbox" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_name" text NOT NULL,
	"dedupe_key" text NOT NULL,
	"job_id" uuid NOT NULL,
	"payload" jsonb NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"dispatched_at" timestamp with time zone,
	"rejected_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "core_outbox_job_uq" ON "core_outbox" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "core_outbox_pending_idx" ON "core_outbox" USING btree ("created_at") WHERE dispatched_at is null and rejected_at is null;