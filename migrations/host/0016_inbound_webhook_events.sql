CREATE TABLE "core_inbound_webhook_events" (
	"id" uuid PRIMARY KEY NOT NULL,
	"webhook" text NOT NULL,
	"event_id" text NOT NULL,
	"event_type" text,
	"status" text DEFAULT 'received' NOT NULL,
	"payload" text NOT NULL,
	"error" text,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"processed_at" timestamp with time zone,
	CONSTRAINT "core_inbound_webhook_events_status_ck" CHECK (status in ('received', 'processed', 'failed'))
);
--> statement-breakpoint
CREATE UNIQUE INDEX "core_inbound_webhook_events_event_uq" ON "core_inbound_webhook_events" USING btree ("webhook","event_id");--> statement-breakpoint
CREATE INDEX "core_inbound_webhook_events_received_idx" ON "core_inbound_webhook_events" USING btree ("webhook","received_at");