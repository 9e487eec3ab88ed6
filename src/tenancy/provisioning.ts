/**
 * Provisioning a tenant: validate the slug, write the catalog row ('provisioning', encrypted database
 * URL) and the owner's membership in one host transaction, then run the `created` lifecycle
 * (clone the template → migrate → seed the owner → active). A failure leaves the tenant 'failed' with
 * the step and error recorded; retry() resumes from that step and ends 'active' without an orphan
 * database or a duplicate row. The same object runs the other lifecycle events (suspend, resume, delete).
 */
import { uuidv7 } from 'uuidv7'
import type { Logger } from 'pino'
import { memberships, type Tenant, tenants } from '../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import { connect, type Sql, withDatabase } from '../db/connect.js'
import type { HostDatabase } from '../db/host.js'
import { encrypt } from '../lib/crypto.js'
import { AppError, badRequest, conflict, PG, pgCode } from '../lib/errors.js'
import { type CatalogWrites, createCatalogWrites } from './catalog-writes.js'
import { errorMessage } from './fleet.js'
import {
  createTenantLocks,
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
  return slug
}

export interface ProvisionInput {
  slug: string
  name: string
  /** The global user who owns the tenant: gets an 'owner' membership and an admin tenant user. */
  ownerUserId?: string | undefined
  planTier?: string | undefined
  /** Who asked (audit log); defaults to the owner. */
  actorUserId?: string | undefined
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
  config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl' | 'tenantDbPrefix' | 'encryptionKeys'>
  logger: Logger
  /** The tenant migrations folder (default migrations/tenant). */
  migrationsFolder?: string
  faults?: LifecycleFaults
}

export interface Provisioner {
  provision(input: ProvisionInput): Promise<ProvisionedTenant>
  /** Resume a failed (or interrupted) provisioning from its recorded step. An active tenant is returned as is. */
  retry(idOrSlug: string, opts?: { actorUserId?: string }): Promise<ProvisionedTenant>
  /** The provisioning steps one at a time (each records progress like a full run), for the job queue. */
  steps: {
    createDatabase(tenantId: string): Promise<void>
    migrate(tenantId: string): Promise<void>
    seedOwner(tenantId: string, ownerUserId?: string): Promise<void>
    activate(tenantId: string): Promise<void>
  }
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

export function createProvisioner(deps: ProvisionerDeps): Provisioner {
  const { host, catalog, pools, config, logger } = deps
  const serverUrl = tenantServerUrl(config)
  const admin: Sql = connect(maintenanceUrl(config), { max: 2, idleTimeoutS: 30, applicationName: 'tenantkit-admin' })
  const lockSql: Sql = connect(maintenanceUrl(config), { max: 1, applicationName: 'tenantkit-locks' })
  const template = createTemplate({ admin, serverUrl, prefix: config.tenantDbPrefix, folder: deps.migrationsFolder, logger })
  const writes = createCatalogWrites({ host, catalog, keys: config.encryptionKeys })
  const ctx: LifecycleContext = { host, pools, writes, locks: createTenantLocks(lockSql), admin, template, logger, faults: deps.faults }

  const failed = (tenantId: string, err: unknown) =>
    err instanceof AppError
      ? err
      : new AppError(503, 'PROVISIONING_FAILED', `provisioning tenant ${tenantId} failed; it is marked failed and can be retried`, {
          tenantId,
          error: errorMessage(err),
        })

  async function provision(input: ProvisionInput): Promise<ProvisionedTenant> {
    const slug = validateSlug(input.slug)
    const name = typeof input.name === 'string' ? input.name.trim() : ''
    if (name.length < 1 || name.length > 200) throw badRequest('INVALID_NAME', 'name must be 1-200 characters')
    const id = uuidv7()
    const dbName = tenantDbName(config.tenantDbPrefix, id)
    try {
      await host.db.transaction(async (tx) => {
        await tx.insert(tenants).values({
          id,
          slug,
          name,
          planTier: input.planTier ?? 'free',
          status: 'provisioning',
          dbName,
          dbUrlEncrypted: encrypt(withDatabase(serverUrl, dbName), config.encryptionKeys),
          provisionStep: 'createDatabase' satisfies ProvisionStep,
          createdBy: input.ownerUserId ?? null,
        })
        if (input.ownerUserId) await tx.insert(memberships).values({ userId: input.ownerUserId, tenantId: id, role: 'owner' })
      })
    } catch (err) {
      const code = pgCode(err instanceof Error ? (err.cause ?? err) : err)
      if (code === PG.uniqueViolation) throw conflict('SLUG_TAKEN', `slug "${slug}" is already taken`)
      if (code === '23503') throw badRequest('UNKNOWN_OWNER', 'the owner user does not exist')
      throw err
    }
    await catalog.invalidate(id)
    try {
      const row = await runLifecycle('created', id, ctx, { actorUserId: input.actorUserId ?? input.ownerUserId })
      return publicView(row!)
    } catch (err) {
      throw failed(id, err)
    }
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
    provision,
    retry,
    steps: { createDatabase: step('createDatabase'), migrate: step('migrate'), seedOwner: step('seedOwner'), activate: step('activate') },
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
