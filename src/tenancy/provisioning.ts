/**
 * Provisioning a tenant, in two parts:
 *   register()   validate the slug, write the catalog row ('provisioning', encrypted database URL), the
 *                owner's membership and the audit entry in one host transaction;
 *   the `created` lifecycle (clone the template → migrate → seed the owner → queue the welcome email →
 *                active), run by the job queue one step per job (jobs/provisioning-jobs.ts) or, by
 *                provision(), right here.
 * A failure leaves the tenant 'failed' with the step and error recorded; retry() resumes from that step
 * and ends 'active' without an orphan database or a duplicate row. The same object runs the other
 * lifecycle events (suspend, resume, delete).
 */
import { and, count, eq, isNull, ne, sql } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import type { Logger } from 'pino'
import { auditLogs, memberships, type Tenant, tenants } from '../../drizzle/host/schema.js'
import { tenantBillingStopFor } from '../billing/tenant-deletion.js'
import type { Config } from '../config.js'
import { connect, type Sql, withDatabase } from '../db/connect.js'
import type { HostDatabase } from '../db/host.js'
import type { JobSubmitter } from '../jobs/registry.js'
import { encrypt } from '../lib/crypto.js'
import { AppError, badRequest, conflict, forbidden, PG, pgCode } from '../lib/errors.js'
import { isUuid } from '../lib/uuid.js'
import { type CatalogWrites, createCatalogWrites } from './catalog-writes.js'
import { errorMessage } from './fleet.js'
import {
  createTenantLocks,
  LIFECYCLE,
  type LifecycleContext,
  type LifecycleEvent,
  type LifecycleFaults,
  type ProvisionStep,
  runLifecycle,
} from './lifecycle.js'
import { createTemplate, maintenanceUrl, type TenantTemplate, tenantDbName, tenantServerUrl } from './template.js'
import type { Catalog, PoolManager } from './types.js'

/** Names that would collide with our own subdomains and routes. */
export const RESERVED_SLUGS: ReadonlySet<string> = new Set([
  'www',
  'api',
  'admin',
  'app',
  'apps',
  'auth',
  'login',
  'logout',
  'signup',
  'register',
  'account',
  'billing',
  'dashboard',
  'docs',
  'help',
  'support',
  'status',
  'health',
  'mail',
  'email',
  'smtp',
  'static',
  'assets',
  'cdn',
  'blog',
  'root',
  'system',
  'internal',
  'webhooks',
  'stripe',
  'tenant',
  'tenants',
  'new',
  'settings',
  'public',
])

const SLUG = /^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$/

/** 400 INVALID_SLUG unless: lowercase letters, digits and hyphens, 3–63 chars, no leading/trailing '-', not reserved. */

export function validateSlug(slug: unknown): string {
  if (typeof slug !== 'string' || !SLUG.test(slug)) {
    throw badRequest('INVALID_SLUG', 'slug must be 3-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen')
  }
  if (RESERVED_SLUGS.has(slug)) throw badRequest('INVALID_SLUG', `slug "${slug}" is reserved`)
  // Slugs are DNS labels (tenant subdomains): "xn--…" is punycode, which renders as a lookalike of
  // another tenant's name; RFC 5891 reserves "--" in 3rd and 4th position for such prefixes.
  if (slug.slice(2, 4) === '--') throw badRequest('INVALID_SLUG', 'slug must not have "--" as its 3rd and 4th characters (xn-- is punycode)')
  // Tenants are named by slug or id everywhere (X-Tenant-ID, paths): a slug shaped like an id would be ambiguous.
  if (isUuid(slug)) throw badRequest('INVALID_SLUG', 'slug must not look like a tenant id')
  return slug
}

export interface ProvisionInput {
  slug: string
  name: string
  /** The global user who owns the tenant: gets an 'owner' membership and an admin tenant user. */
  ownerUserId?: string | undefined
  planTier?: string | undefined
  /**
   * Refuse (403 TENANT_QUOTA_EXCEEDED) when the owner already created this many tenants that are not
   * deleted. Counted under a per-owner lock in the registering transaction, so concurrent creations
   * can't both slip under it. Unset: no limit (operators, the CLI).
   */
  maxCreatedByOwner?: number | undefined
  /** Who asked (audit log); defaults to the owner. */
  actorUserId?: string | undefined
  /** Where the request came from, for the audit log's `tenant.created` entry. */
  origin?: { ip?: string | undefined; userAgent?: string | undefined } | undefined
}

/** The catalog row as callers may see it: no database URL. */
export interface ProvisionedTenant {
  id: string
  slug: string
  name: string
  planTier: string
  status: Tenant['status']
  dbName: string
  migrationVersion: string | null
  migrationStatus: Tenant['migrationStatus']
  provisionStep: string | null
  provisionError: string | null
  createdAt: Date
}

export interface ProvisionerDeps {
  host: HostDatabase
  catalog: Catalog
  pools: PoolManager
  /** With `stripe`, deleting a tenant cancels its subscriptions (lifecycle step cancelBilling). */
  config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl' | 'tenantDbPrefix' | 'encryptionKeys' | 'appBaseUrl'> &
    Partial<Pick<Config, 'stripe'>>
  /** Where lifecycle steps submit jobs (the welcome email): the services' task manager. */
  tasks: Pick<JobSubmitter, 'submit'>
  logger: Logger
  /** The tenant migrations folder (default migrations/tenant). */
  migrationsFolder?: string
  faults?: LifecycleFaults
}

export interface Provisioner {
  /**
   * The first part only: the catalog row in 'provisioning', the owner's membership and the audit entry,
   * in one transaction. The rest is the `created` lifecycle: submit PROVISION_FIRST_JOB to run it.
   */
  register(input: ProvisionInput): Promise<ProvisionedTenant>
  /** register() and the whole `created` lifecycle in this process (the CLI, PROVISION_INLINE). */
  provision(input: ProvisionInput): Promise<ProvisionedTenant>
  /** Resume a failed (or interrupted) provisioning from its recorded step. An active tenant is returned as is. */
  retry(idOrSlug: string, opts?: { actorUserId?: string }): Promise<ProvisionedTenant>
  /** The provisioning steps one at a time (each records progress like a full run), for the job queue. */
  steps: {
    createDatabase(tenantId: string): Promise<void>
    migrate(tenantId: string): Promise<void>
    seedOwner(tenantId: string, ownerUserId?: string): Promise<void>
    sendWelcomeEmail(tenantId: string, ownerUserId?: string): Promise<void>
    activate(tenantId: string): Promise<void>
  }
  /**
   * Mark a registered tenant failed at `step` when its lifecycle could not even be started (the queue
   * refused the first job), so it is not left 'provisioning' forever; retry() picks it up from there.
   */
  recordFailure(tenantId: string, step: ProvisionStep, err: unknown, opts?: { actorUserId?: string | undefined }): Promise<void>
  /** Run a lifecycle event: 'suspended', 'resumed', 'softDeleted', 'hardDeleted' (and 'created', which provision runs). */
  run(event: LifecycleEvent, idOrSlug: string, opts?: { actorUserId?: string }): Promise<void>
  /** The raw catalog row (any status) without its URL. */
  describe(idOrSlug: string): Promise<ProvisionedTenant>
  template: TenantTemplate
  writes: CatalogWrites
  close(): Promise<void>
}

function publicView(row: Tenant): ProvisionedTenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    planTier: row.planTier,
    status: row.status,
    dbName: row.dbName,
    migrationVersion: row.migrationVersion,
    migrationStatus: row.migrationStatus,
    provisionStep: row.provisionStep,
    provisionError: row.provisionError,
    createdAt: row.createdAt,
  }
}

async function assertUnderQuota(tx: HostDatabase['db'], ownerUserId: string, max: number) {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`tenant-quota:${ownerUserId}`}, 0))`)
  const [row] = await tx
    .select({ n: count() })
    .from(tenants)
    .where(and(eq(tenants.createdBy, ownerUserId), isNull(tenants.deletedAt), ne(tenants.status, 'deleted')))
  if ((row?.n ?? 0) >= max) {
    throw forbidden('TENANT_QUOTA_EXCEEDED', `You have created ${max} tenants, the most allowed: delete one first`, { max })
  }
}

export function createProvisioner(deps: ProvisionerDeps): Provisioner {
  const { host, catalog, pools, config, logger } = deps
  const serverUrl = tenantServerUrl(config)
  const admin: Sql = connect(maintenanceUrl(config), { max: 2, idleTimeoutS: 30, applicationName: 'tenantkit-admin' })
  const lockSql: Sql = connect(maintenanceUrl(config), { max: 1, applicationName: 'tenantkit-locks' })
  const template = createTemplate({ admin, serverUrl, prefix: config.tenantDbPrefix, folder: deps.migrationsFolder, logger })
  const writes = createCatalogWrites({ host, catalog, keys: config.encryptionKeys })
  const ctx: LifecycleContext = {
    host,
    pools,
    writes,
    locks: createTenantLocks(lockSql),
    admin,
    template,
    tasks: deps.tasks,
    appBaseUrl: config.appBaseUrl,
    logger,
    billing: tenantBillingStopFor(host, config),
    faults: deps.faults,
  }

  const failed = (tenantId: string, err: unknown) =>
    err instanceof AppError
      ? err
      : new AppError(503, 'PROVISIONING_FAILED', `provisioning tenant ${tenantId} failed; it is marked failed and can be retried`, {
          tenantId,
          error: errorMessage(err),
        })

  async function register(input: ProvisionInput): Promise<ProvisionedTenant> {
    const slug = validateSlug(input.slug)
    const name = typeof input.name === 'string' ? input.name.trim() : ''
    if (name.length < 1 || name.length > 200) throw badRequest('INVALID_NAME', 'name must be 1-200 characters')
    const id = uuidv7()
    const dbName = tenantDbName(config.tenantDbPrefix, id)
    const planTier = input.planTier ?? 'free'
    let row: Tenant
    try {
      row = await host.db.transaction(async (tx) => {
        if (input.ownerUserId && input.maxCreatedByOwner !== undefined) {
          await assertUnderQuota(tx as unknown as HostDatabase['db'], input.ownerUserId, input.maxCreatedByOwner)
        }
        const [inserted] = await tx
          .insert(tenants)
          .values({
            id,
            slug,
            name,
            planTier,
            status: 'provisioning',
            dbName,
            dbUrlEncrypted: encrypt(withDatabase(serverUrl, dbName), config.encryptionKeys),
            provisionStep: LIFECYCLE.created.steps[0],
            createdBy: input.ownerUserId ?? null,
          })
          .returning()
        if (input.ownerUserId) await tx.insert(memberships).values({ userId: input.ownerUserId, tenantId: id, role: 'owner' })
        await tx.insert(auditLogs).values({
          action: 'tenant.created',
          tenantId: id,
          actorUserId: input.actorUserId ?? input.ownerUserId ?? null,
          targetType: 'tenant',
          targetId: id,
          ip: input.origin?.ip,
          userAgent: input.origin?.userAgent?.slice(0, 512),
          metadata: { slug, planTier, ownerUserId: input.ownerUserId ?? null },
        })
        return inserted!
      })
    } catch (err) {
      const code = pgCode(err instanceof Error ? (err.cause ?? err) : err)
      if (code === PG.uniqueViolation) throw conflict('SLUG_TAKEN', `slug "${slug}" is already taken`)
      if (code === '23503') throw badRequest('UNKNOWN_OWNER', 'the owner user does not exist')
      throw err
    }
    await catalog.invalidate(id)
    return publicView(row)
  }

  async function provision(input: ProvisionInput): Promise<ProvisionedTenant> {
    const { id } = await register(input)
    try {
      const row = await runLifecycle('created', id, ctx, { actorUserId: input.actorUserId ?? input.ownerUserId })
      return publicView(row!)
    } catch (err) {
      throw failed(id, err)
    }
  }

  async function recordFailure(tenantId: string, step: ProvisionStep, err: unknown, opts: { actorUserId?: string | undefined } = {}) {
    const error = errorMessage(err)
    await writes.update(tenantId, { status: 'failed', provisionStep: step, provisionError: `${step}: ${error}` })
    await writes.audit({ action: LIFECYCLE.created.failedAudit, tenantId, actorUserId: opts.actorUserId, metadata: { step, error } })
  }

  async function retry(idOrSlug: string, opts: { actorUserId?: string } = {}): Promise<ProvisionedTenant> {
    const row = await writes.get(idOrSlug)
    if (row.status === 'active') return publicView(row)
    try {
      const done = await runLifecycle('created', row.id, ctx, { resume: true, actorUserId: opts.actorUserId })
      return publicView(done!)
    } catch (err) {
      throw failed(row.id, err)
    }
  }

  const step = (s: ProvisionStep) => async (tenantId: string, ownerUserId?: string) => {
    await runLifecycle('created', tenantId, ctx, { from: s, to: s, ownerUserId })
  }

  return {
    register,
    provision,
    retry,
    steps: {
      createDatabase: step('createDatabase'),
      migrate: step('migrate'),
      seedOwner: step('seedOwner'),
      sendWelcomeEmail: step('sendWelcomeEmail'),
      activate: step('activate'),
    },
    recordFailure,
    async run(event, idOrSlug, opts = {}) {
      const row = await writes.get(idOrSlug)
      await runLifecycle(event, row.id, ctx, { actorUserId: opts.actorUserId })
    },
    describe: async (idOrSlug) => publicView(await writes.get(idOrSlug)),
    template,
    writes,
    async close() {
      await Promise.all([admin.end({ timeout: 5 }), lockSql.end({ timeout: 5 })])
    },
  }
}
