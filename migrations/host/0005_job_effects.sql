CREATE TABLE "sys_job_effects" (
	"job_id" uuid NOT NULL,
	"effect" text NOT NULL,
	"status" text DEFAULT 'started' NOT NULL,
	"attempts" integer DEFAULT 1 NOT NULL,
	"result" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sys_job_effects_job_id_effect_pk" PRIMARY KEY("job_id","effect"),
	CONSTRAINT "sys_job_effects_status_ck" CHECK (status in ('started', 'done'))
);
