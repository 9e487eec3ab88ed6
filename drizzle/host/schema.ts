/**
 * The host database: who people are, where each tenant's data lives, who may enter which tenant,
 * what they pay, and what happened. One schema file, readable on one screen.
 */
import { sql } from 'drizzle-orm'
import { boolean, check, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { createdAt, id, updatedAt } from '../columns.js'

export const TENANT_STATUSES = ['provisioning', 'active', 'suspended', 'failed', 'deleted'] as const
export type TenantStatus = (typeof TENANT_STATUSES)[number]
export const MIGRATION_STATUSES = ['pending', 'running', 'current', 'failed'] as const
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number]
export const TENANT_ISOLATIONS = ['database', 'shared'] as const
/** How a tenant's data is kept apart: a database of its own, or its rows in the shared database under row-level security. */
export type TenantIsolation = (typeof TENANT_ISOLATIONS)[number]
export const MEMBERSHIP_ROLES = ['owner', 'admin', 'member'] as const
export type MembershipRole = (typeof MEMBERSHIP_ROLES)[number]
export const MEMBERSHIP_STATUSES = ['active', 'invited', 'suspended'] as const
export const JOB_STATUSES = ['pending', 'running', 'completed', 'failed'] as const
export type JobStatus = (typeof JOB_STATUSES)[number]
export const WEBHOOK_STATUSES = ['processed', 'skipped', 'failed'] as const
export const INBOUND_WEBHOOK_STATUSES = ['received', 'processed', 'failed'] as const
export type InboundWebhookStatus = (typeof INBOUND_WEBHOOK_STATUSES)[number]
export const JOB_EFFECT_STATUSES = ['started', 'done'] as const
export const DB_SERVER_ROLES = ['shared', 'dedicated'] as const
/** 'shared': holds shared databases (and takes database tenants when no dedicated server can); 'dedicated': databases of their own only. */
export type DbServerRole = (typeof DB_SERVER_ROLES)[number]
export const DB_SERVER_STATUSES = ['active', 'draining'] as const
/** 'draining': placement skips it, and `tenants servers drain` moves its tenants away. */
export type DbServerStatus = (typeof DB_SERVER_STATUSES)[number]
/** The server every install starts with: its admin URL is the config's (TENANT_DATABASE_URL, else DATABASE_URL), never stored. */
export const DEFAULT_DB_SERVER = 'default'

const inList = (column: string, values: readonly string[]) => sql.raw(`${column} in (${values.map((v) => `'${v}'`).join(', ')})`)

/** GlobalUser: one identity across every tenant. */
export const users = pgTable(
  'core_users',
  {
    id: id(),
    email: text('email').notNull(),
    name: text('name'),
    passwordHash: text('password_hash'),
    googleId: text('google_id'),
    emailVerifiedAt: timestamp('email_verified_at', { withTimezone: true }),
    /** Platform administrator (/admin): granted by an operator from the CLI, never by configuration alone. */
    isPlatformAdmin: boolean('is_platform_admin').notNull().default(false),
    /** Sessions and API keys issued before this instant are no longer valid (password reset, account takeover repair). */
    sessionsValidAfter: timestamp('sessions_valid_after', { withTimezone: true }),
    /** Sessions (not API keys) started before this instant are void: "log out everywhere", a password change. */
    sessionsRevokedAt: timestamp('sessions_revoked_at', { withTimezone: true }),
    /** The tenant the user last switched to (PUT /me/active-tenant): where login puts them if still a member. */
    activeTenantId: uuid('active_tenant_id'),
    /**
     * Disabled by a platform admin (POST /admin/api/users/:id/disable): login refuses the user (403 USER_DISABLED);
     * the same UPDATE sets sessions_valid_after, so their sessions and API keys stop at once (and stay void after enable).
     */
    disabledAt: timestamp('disabled_at', { withTimezone: true }),
    /** Set by DELETE /me: the row stays (audit entries and tenants point at it), its personal data is gone. */
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
    lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_users_email_lower_uq').on(sql`lower(${t.email})`),
    uniqueIndex('core_users_google_id_uq').on(t.googleId),
  ],
)

/**
 * A Postgres server tenant databases live on. The row named 'default' (made by the migration) is the
 * server of the config (TENANT_DATABASE_URL, else DATABASE_URL) and stores no URL; every other server's admin
 * URL (a role with CREATEDB, database postgres) is stored encrypted like core_tenants.db_url_encrypted.
 */
export const dbServers = pgTable(
  'core_db_servers',
  {
    name: text('name').primaryKey(),
    adminUrlEncrypted: text('admin_url_encrypted'),
    role: text('role', { enum: DB_SERVER_ROLES }).notNull().default('dedicated'),
    status: text('status', { enum: DB_SERVER_STATUSES }).notNull().default('active'),
    /** Most tenant databases placement puts here (null: no limit). */
    capacity: integer('capacity'),
    /** Tenant connections ONE process may hold on this server: its pool budget (null: POOL_CONNECTION_BUDGET). */
    maxConnections: integer('max_connections'),
    /**
     * A 'shared' server's shared database, as its data role (not the tables' owner, no BYPASSRLS), encrypted:
     * shared tenants placed here live in it. Null: no shared database here (the default server's is SHARED_DATABASE_URL).
     */
    sharedUrlEncrypted: text('shared_url_encrypted'),
    /**
     * A transaction pooler in front of this server (PgBouncer), encrypted: `postgres://host:port[?params]`. Its
     * database tenants' pools connect there, with their own database, role and password; null: directly.
     */
    poolerUrlEncrypted: text('pooler_url_encrypted'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  () => [
    check('core_db_servers_role_ck', inList('role', DB_SERVER_ROLES)),
    check('core_db_servers_status_ck', inList('status', DB_SERVER_STATUSES)),
    check('core_db_servers_name_ck', sql`name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'`),
    check('core_db_servers_url_ck', sql`name = 'default' or admin_url_encrypted is not null`),
    check('core_db_servers_capacity_ck', sql`capacity is null or capacity >= 0`),
    check('core_db_servers_max_connections_ck', sql`max_connections is null or max_connections >= 1`),
    check('core_db_servers_shared_url_ck', sql`shared_url_encrypted is null or (role = 'shared' and name <> 'default')`),
  ],
)

/** TenantCatalog: the tenant's connection contract. The database URL is stored encrypted (see src/core/lib/crypto.ts). */
export const tenants = pgTable(
  'core_tenants',
  {
    id: id(),
    slug: text('slug').notNull(),
    name: text('name').notNull(),
    planTier: text('plan_tier').notNull().default('free'),
    status: text('status', { enum: TENANT_STATUSES }).notNull().default('provisioning'),
    /**
     * 'database': its own database (db_name, db_url). 'shared': rows tagged tenant_id in the shared database
     * (db_name/db_url name that database; row-level security keeps tenants apart). Chosen at provisioning from the plan.
     */
    isolation: text('isolation', { enum: TENANT_ISOLATIONS }).notNull().default('database'),
    /** The Postgres server its database (or, shared, the shared database) is on. */
    server: text('server')
      .notNull()
      .default(DEFAULT_DB_SERVER)
      .references(() => dbServers.name),
    dbName: text('db_name').notNull(),
    dbUrlEncrypted: text('db_url_encrypted').notNull(),
    poolerUrlEncrypted: text('pooler_url_encrypted'),
    maxConnections: integer('max_connections'),
    /** The tenant's own Stripe customer: billing is per tenant, never shared through a person's customer. */
    stripeCustomerId: text('stripe_customer_id'),
    /** A plan granted by a platform admin (POST /admin/api/tenants/:id/plan): its entitlements apply when no subscription counts. */
    compPlanKey: text('comp_plan_key'),
    /** When the comped plan stops applying (null: until withdrawn). */
    compPlanExpiresAt: timestamp('comp_plan_expires_at', { withTimezone: true }),
    migrationVersion: text('migration_version'),
    migrationStatus: text('migration_status', { enum: MIGRATION_STATUSES }).notNull().default('pending'),
    migrationError: text('migration_error'),
    migratedAt: timestamp('migrated_at', { withTimezone: true }),
    provisionStep: text('provision_step'),
    provisionError: text('provision_error'),
    /**
     * Set while the tenant moves to another location (core_tenant_moves): writes are refused (503
     * TENANT_MOVING) and its database handles are read-only; reads keep working. Null otherwise.
     */
    movingSince: timestamp('moving_since', { withTimezone: true }),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('core_tenants_slug_uq').on(t.slug),
    // Shared tenants all name the shared database; a database of its own belongs to one tenant.
    uniqueIndex('core_tenants_db_name_uq').on(t.dbName).where(sql`isolation = 'database'`),
    uniqueIndex('core_tenants_stripe_customer_uq').on(t.stripeCustomerId),
    index('core_tenants_status_idx').on(t.status),
    index('core_tenants_migration_idx').on(t.migrationStatus, t.migrationVersion),
    index('core_tenants_server_idx').on(t.server),
    check('core_tenants_status_ck', inList('status', TENANT_STATUSES)),
    check('core_tenants_isolation_ck', inList('isolation', TENANT_ISOLATIONS)),
    check('core_tenants_migration_status_ck', inList('migration_status', MIGRATION_STATUSES)),
    check('core_tenants_slug_ck', sql`slug ~ '^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$'`),
    check('core_tenants_max_connections_ck', sql`max_connections is null or max_connections between 1 and 100`),
  ],
)

/**
 * A tenant's former slug, kept for a while after a rename so links, subdomains and X-Tenant-ID values
 * that name it keep reaching the tenant (the catalog falls back to it); no other tenant may take it
 * until it expires.
 */
export const tenantSlugAliases = pgTable(
  'core_tenant_slug_aliases',
  {
    slug: text('slug').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('core_tenant_slug_aliases_tenant_idx').on(t.tenantId)],
)

/** Membership: which tenants a user may enter, and as what. */
export const memberships = pgTable(
  'core_memberships',
  {
    id: id(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    role: text('role', { enum: MEMBERSHIP_ROLES }).notNull().default('member'),
    status: text('status', { enum: MEMBERSHIP_STATUSES }).notNull().default('active'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_memberships_user_tenant_uq').on(t.userId, t.tenantId),
    index('core_memberships_tenant_idx').on(t.tenantId),
    check('core_memberships_role_ck', inList('role', MEMBERSHIP_ROLES)),
    check('core_memberships_status_ck', inList('status', MEMBERSHIP_STATUSES)),
  ],
)

/** PricingPlan: the tiers on the pricing page, with their Stripe prices. `key` is the stable name ('pro'). */
/** A plan's numeric caps, enforced where the resource is created (403 LIMIT_REACHED) and per request (429). */
export interface PlanLimits {
  members?: number | null
  projects?: number | null
  apiKeys?: number | null
  requestsPerMinute?: number | null
  /** MB the tenant may store (src/features/billing/storage.ts). */
  storageMb?: number | null
  /** Open realtime connections (SSE and WebSocket) at once (src/features/realtime), under REALTIME_MAX_PER_TENANT. */
  realtimeConnections?: number | null
}

export const pricingPlans = pgTable(
  'core_pricing_plans',
  {
    id: id(),
    key: text('key').notNull(),
    name: text('name').notNull(),
    description: text('description'),
    stripePriceMonthly: text('stripe_price_monthly'),
    stripePriceYearly: text('stripe_price_yearly'),
    amountMonthly: integer('amount_monthly'),
    amountYearly: integer('amount_yearly'),
    currency: text('currency').notNull().default('usd'),
    trialDays: integer('trial_days').notNull().default(30),
    features: jsonb('features').$type<string[]>().notNull().default([]),
    /** Numeric caps (members, projects, apiKeys, requestsPerMinute, storageMb, realtimeConnections); a missing or null one is unlimited. */
    limits: jsonb('limits').$type<PlanLimits>().notNull().default({}),
    tierLevel: integer('tier_level').notNull().default(0),
    isActive: boolean('is_active').notNull().default(true),
    sortOrder: integer('sort_order').notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_pricing_plans_key_uq').on(t.key),
    check('core_pricing_plans_amounts_ck', sql`coalesce(amount_monthly, 0) >= 0 and coalesce(amount_yearly, 0) >= 0 and trial_days >= 0`),
  ],
)

/** Subscription: Stripe's subscription state, with the Stripe timestamp it reflects (never overwritten by older events). */
export const subscriptions = pgTable(
  'core_subscriptions',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'set null' }),
    planId: uuid('plan_id').references(() => pricingPlans.id, { onDelete: 'set null' }),
    stripeSubscriptionId: text('stripe_subscription_id').notNull(),
    stripeCustomerId: text('stripe_customer_id').notNull(),
    stripePriceId: text('stripe_price_id'),
    status: text('status').notNull(),
    billingInterval: text('billing_interval'),
    currentPeriodStart: timestamp('current_period_start', { withTimezone: true }),
    currentPeriodEnd: timestamp('current_period_end', { withTimezone: true }),
    trialEnd: timestamp('trial_end', { withTimezone: true }),
    cancelAtPeriodEnd: boolean('cancel_at_period_end').notNull().default(false),
    canceledAt: timestamp('canceled_at', { withTimezone: true }),
    pastDueSince: timestamp('past_due_since', { withTimezone: true }),
    stripeUpdatedAt: timestamp('stripe_updated_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('core_subscriptions_stripe_id_uq').on(t.stripeSubscriptionId), index('core_subscriptions_tenant_idx').on(t.tenantId)],
)

/** HostAuditLog: append-only; a trigger (migrations/host) rejects UPDATE, DELETE and TRUNCATE. */
export const auditLogs = pgTable(
  'sys_audit_logs',
  {
    id: id(),
    actorUserId: uuid('actor_user_id'),
    tenantId: uuid('tenant_id'),
    action: text('action').notNull(),
    targetType: text('target_type'),
    targetId: text('target_id'),
    ip: text('ip'),
    userAgent: text('user_agent'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    /** The platform API key (tka_…, core_admin_api_keys) that acted, when one did; actor_user_id is then its creator. */
    actorApiKeyId: uuid('actor_api_key_id'),
    createdAt: createdAt(),
  },
  (t) => [
    index('sys_audit_logs_tenant_idx').on(t.tenantId, t.createdAt),
    index('sys_audit_logs_actor_idx').on(t.actorUserId, t.createdAt),
    index('sys_audit_logs_action_idx').on(t.action, t.createdAt),
  ],
)

/** SystemJob: the record of a platform-level background job (provisioning, fleet migrations, cleanups). */
export const systemJobs = pgTable(
  'sys_jobs',
  {
    id: id(),
    jobType: text('job_type').notNull(),
    status: text('status', { enum: JOB_STATUSES }).notNull().default('pending'),
    tenantId: uuid('tenant_id'),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull().default({}),
    result: jsonb('result').$type<unknown>(),
    errorLog: text('error_log'),
    retryCount: integer('retry_count').notNull().default(0),
    maxRetries: integer('max_retries').notNull().default(3),
    createdAt: createdAt(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('sys_jobs_status_idx').on(t.status, t.createdAt),
    index('sys_jobs_type_idx').on(t.jobType, t.createdAt),
    check('sys_jobs_status_ck', inList('status', JOB_STATUSES)),
  ],
)

/**
 * The transactional outbox: follow-up work (a job to submit) written in the SAME transaction as the change
 * that asks for it, so an outage of the queue can delay the work but never lose it. The relay
 * (src/core/jobs/outbox.ts) submits each row through the task manager under `job_id` (derived from job_name and
 * dedupe_key: a second intent with the same key is the same job, and submitting it again is a no-op), right
 * after commit and again from a periodic sweep, and sets `dispatched_at` once the queue has it. A row the
 * task manager refuses (unknown job, payload no longer valid) gets `rejected_at` and is never retried.
 */
export const outbox = pgTable(
  'core_outbox',
  {
    id: id(),
    jobName: text('job_name').notNull(),
    dedupeKey: text('dedupe_key').notNull(),
    jobId: uuid('job_id').notNull(),
    payload: jsonb('payload').$type<unknown>().notNull(),
    /** Submissions tried (successful or not). */
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    createdAt: createdAt(),
    dispatchedAt: timestamp('dispatched_at', { withTimezone: true }),
    rejectedAt: timestamp('rejected_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('core_outbox_job_uq').on(t.jobId),
    // The sweep reads only what is still owed, oldest first; dispatched rows leave this index.
    index('core_outbox_pending_idx').on(t.createdAt).where(sql`dispatched_at is null and rejected_at is null`),
  ],
)

/**
 * JobEffect: a side effect outside our databases (an SMTP send) done at most once per job id, whatever
 * BullMQ re-runs (src/core/jobs/effects.ts). 'started' is written before the effect, 'done' after it; a re-run
 * that finds 'done' skips the effect and returns the recorded result.
 */
export const jobEffects = pgTable(
  'sys_job_effects',
  {
    jobId: uuid('job_id').notNull(),
    effect: text('effect').notNull(),
    status: text('status', { enum: JOB_EFFECT_STATUSES }).notNull().default('started'),
    /** Attempts that started the effect (> 1: a re-run found it not done). */
    attempts: integer('attempts').notNull().default(1),
    result: jsonb('result').$type<unknown>(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.effect] }), check('sys_job_effects_status_ck', inList('status', JOB_EFFECT_STATUSES))],
)

/** StripeWebhookEvent: the ledger that makes every Stripe event apply exactly once. */
export const stripeWebhookEvents = pgTable(
  'core_stripe_webhook_events',
  {
    id: id(),
    stripeEventId: text('stripe_event_id').notNull(),
    type: text('type').notNull(),
    status: text('status', { enum: WEBHOOK_STATUSES }).notNull(),
    apiVersion: text('api_version'),
    stripeCreatedAt: timestamp('stripe_created_at', { withTimezone: true }).notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    error: text('error'),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
    processedAt: timestamp('processed_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('core_stripe_webhook_events_event_uq').on(t.stripeEventId),
    index('core_stripe_webhook_events_type_idx').on(t.type, t.receivedAt),
    check('core_stripe_webhook_events_status_ck', inList('status', WEBHOOK_STATUSES)),
  ],
)

/**
 * InboundWebhookEvent: the ledger of signed deliveries from any provider (src/features/inbound-webhooks):
 * one row per (webhook, provider event id), written with the outbox row of the job that processes it, so a
 * redelivery finds the row and changes nothing. `payload` is the body exactly as received (its bytes were signed).
 */
export const inboundWebhookEvents = pgTable(
  'core_inbound_webhook_events',
  {
    id: id(),
    webhook: text('webhook').notNull(),
    eventId: text('event_id').notNull(),
    eventType: text('event_type'),
    status: text('status', { enum: INBOUND_WEBHOOK_STATUSES }).notNull().default('received'),
    payload: text('payload').notNull(),
    error: text('error'),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
    processedAt: timestamp('processed_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('core_inbound_webhook_events_event_uq').on(t.webhook, t.eventId),
    index('core_inbound_webhook_events_received_idx').on(t.webhook, t.receivedAt),
    check('core_inbound_webhook_events_status_ck', inList('status', INBOUND_WEBHOOK_STATUSES)),
  ],
)

export const USER_TOKEN_PURPOSES = ['verify_email', 'password_reset', 'email_change'] as const
export type UserTokenPurpose = (typeof USER_TOKEN_PURPOSES)[number]

/**
 * UserToken: a single-use token mailed to a user (src/core/identity/user-tokens.ts). Only its SHA-256 is stored.
 * `email` is the address it was sent to: a token for an address the account no longer has is void.
 * `newEmail` is the address an email_change token moves the account to.
 */
export const userTokens = pgTable(
  'core_user_tokens',
  {
    id: id(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    purpose: text('purpose', { enum: USER_TOKEN_PURPOSES }).notNull(),
    tokenHash: text('token_hash').notNull(),
    email: text('email').notNull(),
    newEmail: text('new_email'),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('core_user_tokens_hash_uq').on(t.tokenHash),
    index('core_user_tokens_user_idx').on(t.userId, t.purpose),
    check('core_user_tokens_purpose_ck', inList('purpose', USER_TOKEN_PURPOSES)),
    check('core_user_tokens_hash_ck', sql`token_hash ~ '^[0-9a-f]{64}$'`),
  ],
)

export const API_KEY_ROLES = ['admin', 'editor', 'viewer'] as const
export type ApiKeyRole = (typeof API_KEY_ROLES)[number]

/**
 * ApiKey: a tenant's credential for scripts and integrations (src/core/identity/api-keys.ts). Only a SHA-256
 * of the high-entropy secret is stored; `prefix` is what lists show. `role` is the key's maximum:
 * it acts as its creator, never above the creator's current role.
 */
export const apiKeys = pgTable(
  'core_api_keys',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    createdBy: uuid('created_by')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    role: text('role', { enum: API_KEY_ROLES }).notNull(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('core_api_keys_key_hash_uq').on(t.keyHash),
    index('core_api_keys_tenant_idx').on(t.tenantId, t.id),
    index('core_api_keys_created_by_idx').on(t.createdBy),
    check('core_api_keys_role_ck', inList('role', API_KEY_ROLES)),
    check('core_api_keys_key_hash_ck', sql`key_hash ~ '^[0-9a-f]{64}$'`),
  ],
)

/**
 * AdminApiKey: a platform administrator's credential for scripts on /admin/api (src/features/admin/api-keys.ts),
 * `tka_<live|test>_…`. Only a SHA-256 of the secret is stored. It acts as its creator, and only while the
 * creator is a platform admin (read on every use): no tenant, no role of its own.
 */
export const adminApiKeys = pgTable(
  'core_admin_api_keys',
  {
    id: id(),
    createdBy: uuid('created_by')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('core_admin_api_keys_key_hash_uq').on(t.keyHash),
    index('core_admin_api_keys_created_by_idx').on(t.createdBy),
    check('core_admin_api_keys_key_hash_ck', sql`key_hash ~ '^[0-9a-f]{64}$'`),
  ],
)

export const TENANT_EXPORT_STATUSES = ['pending', 'running', 'ready', 'failed', 'downloaded', 'expired'] as const
export type TenantExportStatus = (typeof TENANT_EXPORT_STATUSES)[number]

/**
 * TenantExport: an owner's export of their tenant (POST /api/tenant/export, src/features/tenants/export): a
 * pg_dump of its database and its host rows in one .tar.gz under EXPORT_DIR, downloaded once, gone after 24 h.
 */
export const tenantExports = pgTable(
  'core_tenant_exports',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    requestedBy: uuid('requested_by').references(() => users.id, { onDelete: 'set null' }),
    status: text('status', { enum: TENANT_EXPORT_STATUSES }).notNull().default('pending'),
    /** The archive's file name under EXPORT_DIR while it exists. */
    fileName: text('file_name'),
    sizeBytes: integer('size_bytes'),
    error: text('error'),
    readyAt: timestamp('ready_at', { withTimezone: true }),
    downloadedAt: timestamp('downloaded_at', { withTimezone: true }),
    /** After this the archive is deleted (status expired) if nobody downloaded it. */
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('core_tenant_exports_tenant_idx').on(t.tenantId, t.id),
    index('core_tenant_exports_expires_idx').on(t.status, t.expiresAt),
    check('core_tenant_exports_status_ck', inList('status', TENANT_EXPORT_STATUSES)),
  ],
)

export const TENANT_MOVE_STATES = ['running', 'done', 'failed'] as const
export type TenantMoveState = (typeof TENANT_MOVE_STATES)[number]
/** A move's steps in order; `step` is the next one to run ('done' once all have). src/core/tenancy/move/. */
export const TENANT_MOVE_STEPS = ['mark', 'prepare', 'copy', 'verify', 'switch', 'cleanup', 'clear', 'done'] as const
export type TenantMoveStep = (typeof TENANT_MOVE_STEPS)[number]

/**
 * A tenant moving from one location to another (isolation mode, and the database server when there are
 * several): the durable record that makes the move resumable after a crash at any step. Source and
 * target are fixed when the move starts; `step` is the next step to run. One open (running) move per tenant.
 */
export const tenantMoves = pgTable(
  'core_tenant_moves',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    state: text('state', { enum: TENANT_MOVE_STATES }).notNull().default('running'),
    step: text('step', { enum: TENANT_MOVE_STEPS }).notNull().default('mark'),
    fromIsolation: text('from_isolation', { enum: TENANT_ISOLATIONS }).notNull(),
    /** The database server's name (null: the deployment's one tenant server). */
    fromServer: text('from_server'),
    fromDbName: text('from_db_name').notNull(),
    fromDbUrlEncrypted: text('from_db_url_encrypted').notNull(),
    toIsolation: text('to_isolation', { enum: TENANT_ISOLATIONS }).notNull(),
    toServer: text('to_server'),
    toDbName: text('to_db_name').notNull(),
    toDbUrlEncrypted: text('to_db_url_encrypted').notNull(),
    /** Per table: rows and checksum of the source, as verified against the target. */
    verified: jsonb('verified').$type<Record<string, { rows: number; checksum: string }>>(),
    rowsCopied: integer('rows_copied'),
    /** The `tenants.move` job running it, when queued. */
    jobId: uuid('job_id'),
    requestedBy: uuid('requested_by').references(() => users.id, { onDelete: 'set null' }),
    /** The last failure (the move stays running and resumes from `step`). */
    error: text('error'),
    markedAt: timestamp('marked_at', { withTimezone: true }),
    switchedAt: timestamp('switched_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_tenant_moves_open_uq').on(t.tenantId).where(sql`state = 'running'`),
    index('core_tenant_moves_tenant_idx').on(t.tenantId, t.id),
    check('core_tenant_moves_state_ck', inList('state', TENANT_MOVE_STATES)),
    check('core_tenant_moves_step_ck', inList('step', TENANT_MOVE_STEPS)),
    check('core_tenant_moves_from_isolation_ck', inList('from_isolation', TENANT_ISOLATIONS)),
    check('core_tenant_moves_to_isolation_ck', inList('to_isolation', TENANT_ISOLATIONS)),
  ],
)
export type TenantMove = typeof tenantMoves.$inferSelect

/**
 * 'owner' only from a platform admin provisioning a tenant for an address with no account yet
 * (POST /admin/api/tenants): tenant admins invite admins and members, and ownership is otherwise only
 * ever offered to an admin (ownership offers).
 */
export const INVITATION_ROLES = ['admin', 'member', 'owner'] as const
export type InvitationRole = (typeof INVITATION_ROLES)[number]

/**
 * Invitation: an offer to join a tenant, sent to an email address (src/features/members/invitations). Only a SHA-256
 * of the single-use token is stored. Pending = not accepted, not revoked (and usable while
 * expires_at is ahead); one pending invitation per address and tenant. The membership is created
 * only when the invitee accepts, signed in with that address verified.
 */
export const invitations = pgTable(
  'core_invitations',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    email: text('email').notNull(),
    role: text('role', { enum: INVITATION_ROLES }).notNull(),
    /** The tenant-local role (core_tenant_users.role) the invitee starts with. */
    localRole: text('local_role', { enum: API_KEY_ROLES }).notNull(),
    tokenHash: text('token_hash').notNull(),
    invitedBy: uuid('invited_by').references(() => users.id, { onDelete: 'set null' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    /** When the current token was (re)sent; a resend replaces the token and the expiry. */
    sentAt: timestamp('sent_at', { withTimezone: true }).notNull().defaultNow(),
    acceptedAt: timestamp('accepted_at', { withTimezone: true }),
    acceptedBy: uuid('accepted_by').references(() => users.id, { onDelete: 'set null' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revokedBy: uuid('revoked_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_invitations_token_hash_uq').on(t.tokenHash),
    uniqueIndex('core_invitations_pending_uq')
      .on(t.tenantId, sql`lower(${t.email})`)
      .where(sql`accepted_at is null and revoked_at is null`),
    index('core_invitations_tenant_idx').on(t.tenantId, t.id),
    check('core_invitations_role_ck', inList('role', INVITATION_ROLES)),
    check('core_invitations_local_role_ck', inList('local_role', API_KEY_ROLES)),
    check('core_invitations_token_hash_ck', sql`token_hash ~ '^[0-9a-f]{64}$'`),
    check('core_invitations_closed_once_ck', sql`accepted_at is null or revoked_at is null`),
  ],
)

/**
 * OwnershipOffer: an owner offers ownership of a tenant to one of its admins, who becomes an owner
 * only by accepting it. Open = not accepted, not canceled (and usable while expires_at is ahead);
 * one open offer per tenant and member.
 */
export const ownershipOffers = pgTable(
  'core_ownership_offers',
  {
    id: id(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    offeredBy: uuid('offered_by').references(() => users.id, { onDelete: 'set null' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    acceptedAt: timestamp('accepted_at', { withTimezone: true }),
    canceledAt: timestamp('canceled_at', { withTimezone: true }),
    canceledBy: uuid('canceled_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('core_ownership_offers_open_uq').on(t.tenantId, t.userId).where(sql`accepted_at is null and canceled_at is null`),
    index('core_ownership_offers_tenant_idx').on(t.tenantId, t.id),
    check('core_ownership_offers_closed_once_ck', sql`accepted_at is null or canceled_at is null`),
  ],
)

export type User = typeof users.$inferSelect
export type Tenant = typeof tenants.$inferSelect
export type DbServer = typeof dbServers.$inferSelect
export type Membership = typeof memberships.$inferSelect
export type PricingPlan = typeof pricingPlans.$inferSelect
export type Subscription = typeof subscriptions.$inferSelect
export type AuditLog = typeof auditLogs.$inferSelect
export type SystemJob = typeof systemJobs.$inferSelect
export type StripeWebhookEvent = typeof stripeWebhookEvents.$inferSelect
export type ApiKey = typeof apiKeys.$inferSelect
export type AdminApiKey = typeof adminApiKeys.$inferSelect
export type TenantExport = typeof tenantExports.$inferSelect
export type UserToken = typeof userTokens.$inferSelect
export type Invitation = typeof invitations.$inferSelect
export type OwnershipOffer = typeof ownershipOffers.$inferSelect
