/**
 * A tenant database: the tenant's own users, their permissions and settings, its job records, and
 * `projects`, the example business table an adopter copies. Every tenant database is a clone of a
 * template migrated from migrations/tenant.
 */
import { sql } from 'drizzle-orm'
import { boolean, check, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { createdAt, id, updatedAt } from '../columns.js'

export const TENANT_ROLES = ['admin', 'editor', 'viewer'] as const
export type TenantRole = (typeof TENANT_ROLES)[number]
export const TENANT_JOB_STATUSES = ['pending', 'running', 'completed', 'failed'] as const

const inList = (column: string, values: readonly string[]) => sql.raw(`${column} in (${values.map((v) => `'${v}'`).join(', ')})`)

/** TenantUser: the local profile of a global user inside this tenant. */
export const tenantUsers = pgTable(
  'core_tenant_users',
  {
    id: id(),
    globalUserId: uuid('global_user_id').notNull(),
    email: text('email').notNull(),
    name: text('name'),
    role: text('role', { enum: TENANT_ROLES }).notNull().default('viewer'),
    preferences: jsonb('preferences').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('core_tenant_users_global_uq').on(t.globalUserId), check('core_tenant_users_role_ck', inList('role', TENANT_ROLES))],
)

/** TenantPermission: a per-user grant (granted=true) or explicit denial (false) that overrides the role default. */
export const permissions = pgTable(
  'core_permissions',
  {
    id: id(),
    tenantUserId: uuid('tenant_user_id')
      .notNull()
      .references(() => tenantUsers.id, { onDelete: 'cascade' }),
    resource: text('resource').notNull(),
    action: text('action').notNull(),
    granted: boolean('granted').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('core_permissions_user_resource_action_uq').on(t.tenantUserId, t.resource, t.action)],
)

/** TenantSettings: one row per tenant database. */
export const settings = pgTable('core_settings', {
  id: id(),
  timezone: text('timezone').notNull().default('UTC'),
  currency: text('currency').notNull().default('usd'),
  featureFlags: jsonb('feature_flags').$type<Record<string, boolean>>().notNull().default({}),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
})

/** TenantJob: the record of a background job run for this tenant (services.tasks). */
export const tenantJobs = pgTable(
  'tenant_jobs',
  {
    id: id(),
    jobType: text('job_type').notNull(),
    status: text('status', { enum: TENANT_JOB_STATUSES }).notNull().default('pending'),
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
    index('tenant_jobs_status_idx').on(t.status, t.createdAt),
    index('tenant_jobs_type_idx').on(t.jobType, t.createdAt),
    check('tenant_jobs_status_ck', inList('status', TENANT_JOB_STATUSES)),
  ],
)

/** The example business table: copy it (schema, repository, routes, tests) for your own resources. */
export const projects = pgTable(
  'projects',
  {
    id: id(),
    name: text('name').notNull(),
    description: text('description'),
    status: text('status', { enum: ['active', 'archived'] }).notNull().default('active'),
    createdBy: uuid('created_by'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [check('projects_status_ck', sql`status in ('active', 'archived')`), index('projects_created_idx').on(t.createdAt)],
)

export const WEBHOOK_DELIVERY_STATUSES = ['pending', 'succeeded', 'failed'] as const
export type WebhookDeliveryStatus = (typeof WEBHOOK_DELIVERY_STATUSES)[number]

/**
 * WebhookEndpoint: a URL the tenant's admins registered to receive its domain events (src/features/webhooks).
 * The signing secret is sealed with ENCRYPTION_KEYS; `consecutiveFailures` counts failed attempts since the
 * last success, and the endpoint is disabled when it reaches WEBHOOKS_DISABLE_AFTER.
 */
export const webhookEndpoints = pgTable('webhook_endpoints', {
  id: id(),
  url: text('url').notNull(),
  description: text('description'),
  events: text('events').array().notNull(),
  secretSealed: text('secret_sealed').notNull(),
  enabled: boolean('enabled').notNull().default(true),
  consecutiveFailures: integer('consecutive_failures').notNull().default(0),
  disabledReason: text('disabled_reason'),
  lastSuccessAt: timestamp('last_success_at', { withTimezone: true }),
  lastFailureAt: timestamp('last_failure_at', { withTimezone: true }),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
})

/** WebhookDelivery: one event sent (or to be sent) to one endpoint, with the outcome of its last attempt. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: id(),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventId: uuid('event_id').notNull(),
    eventType: text('event_type').notNull(),
    /** The body sent, exactly (what the signature covers). */
    payload: text('payload').notNull(),
    status: text('status', { enum: WEBHOOK_DELIVERY_STATUSES }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    responseStatus: integer('response_status'),
    /** The first KB of the last response, or why the attempt failed. */
    responseBody: text('response_body'),
    error: text('error'),
    durationMs: integer('duration_ms'),
    lastAttemptAt: timestamp('last_attempt_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('webhook_deliveries_endpoint_idx').on(t.endpointId, t.id),
    check('webhook_deliveries_status_ck', inList('status', WEBHOOK_DELIVERY_STATUSES)),
  ],
)

export type TenantUser = typeof tenantUsers.$inferSelect
export type Permission = typeof permissions.$inferSelect
export type Settings = typeof settings.$inferSelect
export type TenantJob = typeof tenantJobs.$inferSelect
export type Project = typeof projects.$inferSelect
export type WebhookEndpoint = typeof webhookEndpoints.$inferSelect
export type WebhookDelivery = typeof webhookDeliveries.$inferSelect
