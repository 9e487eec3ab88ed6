/**
 * Provisioning a tenant, in two parts:
 *   register()   validate the slug, write the catalog row ('provisioning', encrypted database URL), the
 *                owner's membership and the audit entry in one host transaction;
 *   the `created` lifecycle (clone the template → migrate → seed the owner → the features' steps, such
 *                as queueing the welcome email → active), run by the job queue one step per job (jobs/provisioning-jobs.ts) or, by
 *                provision(), right here.
 * A failure leaves the tenant 'failed' with the step and error recorded; retry() resumes from that step
 * and ends 'active' without an orphan database or a duplicate row. When even the failure mark cannot
 * be written (the host database is down), the tenant stays 'provisioning'; once it is stale (unchanged
 * for PROVISION_STALE_AFTER_S and held by no run) resumeStale() finishes it, run by the worker's sweep
 * (stale-sweep.ts) or `tenants resume-stale`. The same object runs the other lifecycle events
 * (suspend, resume, delete).
 */
import { and, asc, count, eq, getTableColumns, isNull, lt, ne, sql } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import type { Logger } from 'pino'
import { memberships, type Tenant, type TenantIsolation, tenants } from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import type { JobSubmitter } from '../jobs/registry.js'
import { connect, type Sql, withDatabase } from '../db/connect.js'
import type { HostDatabase } from '../db/host.js'
import { encrypt } from '../lib/crypto.js'
import { audit } from '../lib/audit.js'
import { AppError, badRequest, conflict, forbidden, PG, pgCode } from '../lib/errors.js'
import { isUuid } from '../lib/uuid.js'
import { type AuditOrigin, type CatalogWrites, createCatalogWrites } from './catalog-writes.js'
import { errorMessage } from '../lib/error-log.js'
import {
  type AssembledLifecycle,
  assembleLifecycle,
  type CORE_LIFECYCLE,
  createTenantLocks,
  type FailureMarkPolicy,
  FIRST_PROVISION_STEP,
  failureMarked,
  type LifecycleContext,
  type LifecycleEvent,
  type LifecycleFaults,
  type LifecycleOwner,
  markProvisioningFailed,
  type ProvisionStep,
  type RunOptions,
  type RunOutcome,
  runLifecycle,
  runLifecycleHeld,
} from './lifecycle.js'
import { createSharedDatabase, type SharedDatabase } from './shared/shared-database.js'
import { claimSlug } from './slugs.js'
import { createTemplate, maintenanceUrl, type TenantTemplate, tenantDbName, tenantServerUrl } from './template.js'
import { createPlacement, createServerRegistry, DEFAULT_DB_SERVER, defaultPlacement, type PlacementPolicy, type ServerRegistry } from './servers.js'
import type { Catalog, PoolManager } from './types.js'
import type { ServiceMetrics } from '../lib/service-metrics.js'

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
  if (slug.slice(2, 4) === '--')
    throw badRequest('INVALID_SLUG', 'slug must not have "--" as its 3rd and 4th characters (xn-- is punycode)')
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
   * 'database' or 'shared'; default: TENANT_ISOLATION ('plan': the plan's `isolation` in config/plans.json,
   * database when the plan names none or shared isolation is off).
   */
  isolation?: TenantIsolation | undefined
  /**
   * The database server (core_db_servers.name) of the tenant's database, or (shared) of its shared database;
   * default: the placement policy's choice. Refused when unknown (404 SERVER_NOT_FOUND), draining (409
   * SERVER_DRAINING) or, for a shared tenant, a server holding no shared database (400 INVALID_SERVER).
   */
  server?: string | undefined
  /**
   * Refuse (403 TENANT_QUOTA_EXCEEDED) when the owner already created this many tenants that are not
   * deleted. Counted under a per-owner lock in the registering transaction, so concurrent creations
   * can't both slip under it. Unset: no limit (operators, the CLI).
   */
  maxCreatedByOwner?: number | undefined
  /** Who asked (audit log); defaults to the owner. */
  actorUserId?: string | undefined
  /** Where the request came from, for the audit log's `tenant.created` entry. */
  origin?: AuditOrigin | undefined
}

/** The catalog row as callers may see it: no database URL. */
export interface ProvisionedTenant {
  id: string
  slug: string
  name: string
  planTier: string
  isolation: TenantIsolation
  /** The database server it is on. */
  server: string
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
  /** appBaseUrl and stripe are for features' lifecycle steps (the welcome email's link, cancelBilling). */
  config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl' | 'tenantDbPrefix' | 'encryptionKeys' | 'appBaseUrl'> &
    Partial<Pick<Config, 'stripe' | 'provisioning' | 'sharedDatabaseUrl' | 'tenantIsolation' | 'placementBy'>>
  /** A plan's isolation (config/plans.json `isolation`), for TENANT_ISOLATION=plan; default: none (database). */
  planIsolation?: (planTier: string) => TenantIsolation | undefined
  /** Where a new database tenant goes among the active servers (servers.ts); default: defaultPlacement. */
  placement?: PlacementPolicy
  /** Where lifecycle steps submit jobs (the welcome email): the services' task manager. */
  tasks: Pick<JobSubmitter, 'submit'>
  /** The events and their steps, features' included (services.lifecycle, KIT_LIFECYCLE); default: the core's steps only. */
  lifecycle?: AssembledLifecycle
  logger: Logger
  /** The tenant migrations folder (default migrations/tenant). */
  migrationsFolder?: string
  faults?: LifecycleFaults
  /** Provisioning durations are observed here (services.metrics); none when absent. */
  metrics?: Pick<ServiceMetrics, 'provisioningDuration'>
  /** How long a failed run keeps retrying its failure mark (tests shorten it). */
  failureMark?: Partial<FailureMarkPolicy>
}

/** One provisioning step, run alone (as a step job does); `ownerUserId` for the steps that need the owner. */
export type ProvisionStepRun = (tenantId: string, ownerUserId?: string) => Promise<StepResult>

/** What a provisioning step job did: its step's work, or nothing because the tenant is past provisioning. */
export interface StepResult {
  outcome: RunOutcome
  status: Tenant['status']
}

/** A tenant left 'provisioning' with nothing finishing it. */
export interface StaleTenant {
  id: string
  slug: string
  provisionStep: string | null
  updatedAt: Date
}

export interface StaleSweepResult {
  /** Resumed and now active. */
  resumed: string[]
  /** Resumed and failed again: 'failed' with the error recorded (tenants retry, once the cause is fixed). */
  failed: { slug: string; error: string }[]
  /** A run took them meanwhile: left to it. */
  busy: string[]
}

export interface Provisioner {
  /**
   * The first part only: the catalog row in 'provisioning', the owner's membership and the audit entry,
   * in one transaction. The rest is the `created` lifecycle: submit PROVISION_FIRST_JOB to run it.
   */
  register(input: ProvisionInput): Promise<ProvisionedTenant>
  /** The isolation register() would give this input (explicit, TENANT_ISOLATION, or the plan's); 400 when invalid. */
  isolationFor(input: Pick<ProvisionInput, 'isolation' | 'planTier'>): TenantIsolation
  /** register() and the whole `created` lifecycle in this process (the CLI, PROVISION_INLINE, shared tenants). */
  provision(input: ProvisionInput): Promise<ProvisionedTenant>
  /** Resume a failed (or interrupted) provisioning from its recorded step. An active tenant is returned as is. */
  retry(idOrSlug: string, opts?: { actorUserId?: string }): Promise<ProvisionedTenant>
  /**
   * The provisioning steps one at a time (each records progress like a full run), for the job queue.
   * On a tenant past provisioning (active, suspended) a step is done already: 'already_done', no write.
   */
  steps: { readonly [S in (typeof CORE_LIFECYCLE)['created']['steps'][number]]: ProvisionStepRun } & Readonly<
    Record<ProvisionStep, ProvisionStepRun | undefined>
  >
  /**
   * Mark a registered tenant failed at `step` when its lifecycle could not even be started (the queue
   * refused the first job), so it is not left 'provisioning' forever; retry() picks it up from there.
   */
  recordFailure(tenantId: string, step: ProvisionStep, err: unknown, opts?: { actorUserId?: string | undefined }): Promise<void>
  /**
   * Run a lifecycle event: 'suspended', 'resumed', 'softDeleted', 'restored', 'hardDeleted' (and 'created', which
   * provision runs). 'already_done' when the tenant was in the event's end state already (nothing written).
   */
  run(
    event: LifecycleEvent,
    idOrSlug: string,
    opts?: { actorUserId?: string | undefined; origin?: AuditOrigin | undefined; onlyIf?: RunOptions['onlyIf'] },
  ): Promise<RunOutcome>
  /**
   * Tenants still 'provisioning' whose row has not changed for `olderThanS` (default
   * PROVISION_STALE_AFTER_S) and that no run holds: a process died, or could not record a failure.
   */
  listStale(opts?: { olderThanS?: number }): Promise<StaleTenant[]>
  /** Resume every stale tenant through retry(), one at a time; one sweep at a time across processes. */
  resumeStale(opts?: { olderThanS?: number; signal?: AbortSignal }): Promise<StaleSweepResult | 'busy'>
  /** The raw catalog row (any status) without its URL. */
  describe(idOrSlug: string): Promise<ProvisionedTenant>
  /** The default server's template (servers.template(name) for another server's). */
  template: TenantTemplate
  /** The database servers (core_db_servers): their maintenance pools and templates. */
  servers: ServerRegistry
  /** Where new database tenants go (ProvisionerDeps.placement): a drain asks it where each tenant goes. */
  placement: PlacementPolicy
  /** The shared database of shared-isolation tenants; undefined when SHARED_DATABASE_URL is unset. */
  shared: SharedDatabase | undefined
  writes: CatalogWrites
  close(): Promise<void>
}

function publicView(row: Tenant): ProvisionedTenant {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    planTier: row.planTier,
    isolation: row.isolation,
    server: row.server,
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

/**
 * The maintenance database URL with statement_timeout and lock_timeout as startup parameters (postgres.js
 * sends URL query parameters it does not know as such): CREATE/DROP DATABASE and the template lock wait
 * then end with an error instead of blocking a provisioning run without bound. Values the operator put
 * in TENANT_DATABASE_URL win.
 */
export function boundedMaintenanceUrl(config: Parameters<typeof maintenanceUrl>[0], timeoutMs: number): string {
  return withTimeouts(maintenanceUrl(config), timeoutMs)
}

/** statement_timeout and lock_timeout as startup parameters, unless the URL sets them (any server's maintenance URL). */
export function withTimeouts(maintenance: string, timeoutMs: number): string {
  const url = new URL(maintenance)
  for (const param of ['statement_timeout', 'lock_timeout']) {
    if (!url.searchParams.has(param)) url.searchParams.set(param, String(timeoutMs))
  }
  return url.toString()
}

/** A core_tenants row as postgres.js returns it (column names) → the drizzle row (field names, mapped values). */
const TENANT_COLUMNS = Object.entries(getTableColumns(tenants))
function tenantFromRow(raw: Record<string, unknown>): Tenant {
  const row: Record<string, unknown> = {}
  for (const [field, column] of TENANT_COLUMNS) {
    const value = raw[column.name]
    row[field] = value === null || value === undefined ? null : column.mapFromDriverValue(value)
  }
  return row as Tenant
}

const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000
const DEFAULT_STALE_AFTER_S = 600
/** The sweep's own lock, in the tenant locks' key space (never a tenant id). */
const SWEEP_LOCK = 'sweep:provisioning'

export function createProvisioner(deps: ProvisionerDeps): Provisioner {
  const { host, catalog, pools, config, logger } = deps
  const serverUrl = tenantServerUrl(config)
  const statementTimeoutMs = config.provisioning?.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS
  const maintenance = boundedMaintenanceUrl(config, statementTimeoutMs)
  const admin: Sql = connect(maintenance, { max: 2, idleTimeoutS: 30, applicationName: 'tenantkit-admin' })
  const lockSql: Sql = connect(maintenance, { max: 1, applicationName: 'tenantkit-locks' })
  const staleAfterS = config.provisioning?.staleAfterS ?? DEFAULT_STALE_AFTER_S
  const template = createTemplate({ admin, serverUrl, prefix: config.tenantDbPrefix, folder: deps.migrationsFolder, logger })
  const writes = createCatalogWrites({ host, catalog, keys: config.encryptionKeys })
  const shared = config.sharedDatabaseUrl
    ? createSharedDatabase({ admin, serverUrl, url: config.sharedDatabaseUrl, folder: deps.migrationsFolder, logger })
    : undefined
  const servers = createServerRegistry({
    host,
    config,
    logger,
    defaultAdmin: admin,
    defaultTemplate: template,
    folder: deps.migrationsFolder,
    bound: (url) => withTimeouts(url, statementTimeoutMs),
    defaultShared: shared,
  })
  const placement = deps.placement ?? (config.placementBy === 'size' ? createPlacement({ by: 'size' }) : defaultPlacement)
  const ctx: LifecycleContext = {
    shared,
    host,
    pools,
    writes,
    locks: createTenantLocks(lockSql),
    admin,
    template,
    servers,
    logger,
    lifecycle: deps.lifecycle ?? assembleLifecycle(),
    config,
    tasks: deps.tasks,
    faults: deps.faults,
    failureMark: deps.failureMark,
  }

  const failed = (tenantId: string, err: unknown) =>
    err instanceof AppError
      ? err
      : new AppError(
          503,
          'PROVISIONING_FAILED',
          failureMarked(err) === false
            ? `provisioning tenant ${tenantId} failed and could not be marked failed (the database is unreachable); it is resumed once stale, or with tenants retry`
            : `provisioning tenant ${tenantId} failed; it is marked failed and can be retried`,
          { tenantId, error: errorMessage(err) },
        )

  /** Explicit choice, else TENANT_ISOLATION (plan: the plan's); a plan asking for shared gets database when shared is off. */
  function isolationOf(input: Pick<ProvisionInput, 'isolation'>, planTier: string): TenantIsolation {
    const explicit = input.isolation ?? (config.tenantIsolation && config.tenantIsolation !== 'plan' ? config.tenantIsolation : undefined)
    if (explicit !== undefined) {
      if (explicit !== 'database' && explicit !== 'shared') throw badRequest('INVALID_ISOLATION', 'isolation must be database or shared')
      if (explicit === 'shared' && !shared) throw badRequest('SHARED_ISOLATION_OFF', 'shared isolation is not configured (SHARED_DATABASE_URL)')
      return explicit
    }
    return deps.planIsolation?.(planTier) === 'shared' && shared ? 'shared' : 'database'
  }

  type SharedHome = { server: string; db: SharedDatabase }
  /**
   * Where a new shared tenant's rows may go: the server asked for (it must hold a shared database and be
   * active), else the one active server holding one (every install that never added a shared server:
   * nothing to count), else undefined with the candidates, among which placement chooses under the
   * placement lock (so a burst of sign-ups spreads instead of all seeing the same counts).
   */
  async function sharedHomes(asked: string | undefined): Promise<{ home?: SharedHome; candidates: SharedHome[] }> {
    if (asked !== undefined) {
      const server = await servers.get(asked)
      if (server.status === 'draining') throw conflict('SERVER_DRAINING', `database server "${server.name}" is draining; it takes no new tenants`)
      const db = await servers.shared(server.name)
      if (!db) throw badRequest('INVALID_SERVER', `database server "${server.name}" holds no shared database (servers add --role shared --shared-url …)`)
      return { home: { server: server.name, db }, candidates: [] }
    }
    const hosts = (await servers.sharedHosts()).filter((s) => s.status === 'active')
    // The default server draining with no other shared database: its shared database is still the only one.
    if (hosts.length === 0 && shared) return { home: { server: DEFAULT_DB_SERVER, db: shared }, candidates: [] }
    const candidates = (await Promise.all(hosts.map(async (h) => ({ server: h.name, db: await servers.shared(h) })))).filter(
      (c): c is SharedHome => c.db !== undefined,
    )
    if (candidates.length === 0) throw new AppError(503, 'NO_SERVER_AVAILABLE', 'no database server with a shared database can take a new tenant')
    return candidates.length === 1 ? { home: candidates[0], candidates: [] } : { candidates }
  }

  async function register(input: ProvisionInput): Promise<ProvisionedTenant> {
    const slug = validateSlug(input.slug)
    const name = typeof input.name === 'string' ? input.name.trim() : ''
    if (name.length < 1 || name.length > 200) throw badRequest('INVALID_NAME', 'name must be 1-200 characters')
    const id = uuidv7()
    const planTier = input.planTier ?? 'free'
    const isolation = isolationOf(input, planTier)
    // A shared tenant: the shared database of the server asked for, or of the placement policy's choice
    // among the servers holding one. Its catalog row names that database (its data role's URL): the pool
    // manager keys its pool by it.
    const homes = isolation === 'shared' ? await sharedHomes(input.server) : undefined
    // A database tenant on the server asked for, or the placement policy's choice among the active servers.
    const asked = isolation === 'database' && input.server !== undefined ? await servers.get(input.server) : undefined
    if (asked?.status === 'draining') throw conflict('SERVER_DRAINING', `database server "${asked.name}" is draining; it takes no new tenants`)
    const active = isolation === 'database' && !asked ? (await servers.list()).filter((s) => s.status === 'active') : []
    // One server with no capacity set (every install that never added one): nothing to choose, no lock, no count.
    const only = active.length === 1 && active[0]!.capacity === null ? active[0] : undefined
    // A shared tenant is rows in a database that is migrated once per process (ensure() is a no-op after
    // the first): once it is ready, the row is written already current at its version, so the
    // createDatabase step has nothing left to record (one catalog write and invalidation fewer). If it is
    // not (the shared database unreachable), the step ensures it again and records its failure as usual.
    // Every shared database placement may choose (once per process each; a failure leaves that one to the step).
    const sharedReady = new Set<string>()
    await Promise.all(
      (homes?.home ? [homes.home] : (homes?.candidates ?? [])).map((h) =>
        h.db.ensure().then(
          () => sharedReady.add(h.server),
          () => undefined,
        ),
      ),
    )
    let row: Tenant
    try {
      row = await host.db.transaction(async (tx) => {
        const htx = tx as unknown as HostDatabase['db']
        let server = asked ?? only
        if (isolation === 'database' && !server) {
          // Under a lock, so concurrent registrations see each other's rows in the counts.
          await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended('tenantkit:placement', 0))`)
          const load = (await servers.load(htx, { sizes: placement.sizes })).filter((l) => active.some((s) => s.name === l.name))
          const name = placement({ tenantId: id, slug, planTier, isolation }, load)
          server = active.find((s) => s.name === name)
          if (!server) throw new AppError(503, 'NO_SERVER_AVAILABLE', 'no database server can take a new tenant (all full or draining)')
        }
        let home = homes?.home
        if (homes && !home) {
          await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended('tenantkit:placement', 0))`)
          const load = (await servers.load(htx, { sizes: placement.sizes })).filter((l) => homes.candidates.some((c) => c.server === l.name))
          const name = placement({ tenantId: id, slug, planTier, isolation }, load)
          home = homes.candidates.find((c) => c.server === name)
          if (!home) throw new AppError(503, 'NO_SERVER_AVAILABLE', 'no database server with a shared database can take a new tenant')
        }
        const dbName = home ? home.db.dbName : tenantDbName(config.tenantDbPrefix, id)
        const serverName = home?.server ?? server?.name ?? DEFAULT_DB_SERVER
        const dbUrl = home ? home.db.url : withDatabase(server!.adminUrl, dbName)
        const migrated =
          home && sharedReady.has(home.server)
            ? { migrationVersion: home.db.info.version, migrationStatus: 'current' as const, migratedAt: new Date(), migrationError: null }
            : {}
        await claimSlug(htx, slug, id)
        if (input.ownerUserId && input.maxCreatedByOwner !== undefined) {
          await assertUnderQuota(tx as unknown as HostDatabase['db'], input.ownerUserId, input.maxCreatedByOwner)
        }
        // The three inserts are sent together (postgres.js pipelines them on the transaction's connection,
        // run in order): one round trip instead of three. If the catalog row fails (slug taken), the
        // others fail with it (the transaction is aborted) and Promise.all reports the first error, the row's.
        const [[inserted]] = await Promise.all([
          tx
            .insert(tenants)
            .values({
              id,
              slug,
              name,
              planTier,
              isolation,
              server: serverName,
              status: 'provisioning',
              dbName,
              dbUrlEncrypted: encrypt(dbUrl, config.encryptionKeys),
              provisionStep: FIRST_PROVISION_STEP,
              createdBy: input.ownerUserId ?? null,
              ...migrated,
            })
            .returning(),
          input.ownerUserId ? tx.insert(memberships).values({ userId: input.ownerUserId, tenantId: id, role: 'owner' }) : undefined,
          audit(
            tx,
            {
              action: 'tenant.created',
              tenantId: id,
              actorUserId: input.actorUserId ?? input.ownerUserId ?? null,
              targetType: 'tenant',
              targetId: id,
              metadata: { slug, planTier, isolation, server: serverName, ownerUserId: input.ownerUserId ?? null },
            },
            input.origin,
          ),
        ])
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

  /**
   * register() for a shared tenant whose shared database is ready, as one write to the host database:
   * begin, the slug's lock (and the owner's quota lock), then ONE statement that checks the slug's live
   * aliases and the quota and inserts the catalog row (current at the shared database's version), the
   * owner's membership and the audit entry, returning the row and the owner (seedOwner and the welcome
   * email need them), and commit: all sent together, one round trip. Meanwhile the tenant's lifecycle lock
   * is taken on its own connection, as runLifecycle would take it right after (a run that got there first
   * makes this one TENANT_BUSY, as before); the row needs no second read under it, since only a run,
   * which needs that lock, writes a tenant's row between its registration and its first run. Same rows, same
   * errors (SLUG_TAKEN, TENANT_QUOTA_EXCEEDED, UNKNOWN_OWNER) as register(); raw postgres.js because
   * drizzle's transaction waits for BEGIN and its statements go unprepared (a Describe round trip each).
   */
  async function registerShared(
    input: ProvisionInput,
    t: { id: string; slug: string; name: string; planTier: string; home: SharedHome },
    lock: Promise<boolean>,
  ): Promise<{ row: Tenant; owner: LifecycleOwner | undefined }> {
    const ownerId = input.ownerUserId ?? null
    const actor = input.actorUserId ?? input.ownerUserId ?? null
    const quota = input.ownerUserId && input.maxCreatedByOwner !== undefined ? input.maxCreatedByOwner : null
    const metadata = JSON.stringify({ slug: t.slug, planTier: t.planTier, isolation: 'shared', server: t.home.server, ownerUserId: ownerId })
    try {
      return await registerSharedRow(input, t, lock, { ownerId, actor, quota, metadata })
    } catch (err) {
      // Not registered: the lock (when it was taken) goes back.
      if (await lock.catch(() => false)) await ctx.locks.release(t.id).catch(() => {})
      throw err
    }
  }

  async function registerSharedRow(
    input: ProvisionInput,
    t: { id: string; slug: string; name: string; planTier: string; home: SharedHome },
    lock: Promise<boolean>,
    p: { ownerId: string | null; actor: string | null; quota: number | null; metadata: string },
  ): Promise<{ row: Tenant; owner: LifecycleOwner | undefined }> {
    const { db, server } = t.home
    const { ownerId, actor, quota, metadata } = p
    const conn = await host.sql.reserve()
    try {
      // Sent together without waiting (postgres.js pipelines on one connection); the connection runs them in
      // order, so the check takes its snapshot only once the locks are held, as in claimSlug.
      const sent = [
        conn`begin`,
        conn`select pg_advisory_xact_lock(hashtextextended(${`slug:${t.slug}`}::text, 0))`,
        ...(quota !== null ? [conn`select pg_advisory_xact_lock(hashtextextended(${`tenant-quota:${ownerId}`}::text, 0))`] : []),
        conn<Record<string, unknown>[]>`
          with refused as (
            select exists (
                select 1 from core_tenant_slug_aliases where slug = ${t.slug}::text and expires_at > now() and tenant_id <> ${t.id}::uuid
              ) as slug_held,
              coalesce(${quota}::int <= (
                select count(*) from core_tenants where created_by = ${ownerId}::uuid and deleted_at is null and status <> 'deleted'
              ), false) as over_quota
          ), t as (
            insert into core_tenants (id, slug, name, plan_tier, isolation, server, status, db_name, db_url_encrypted, provision_step,
              created_by, migration_version, migration_status, migrated_at, migration_error)
            select ${t.id}::uuid, ${t.slug}::text, ${t.name}::text, ${t.planTier}::text, 'shared', ${server}::text, 'provisioning',
              ${db.dbName}::text, ${encrypt(db.url, config.encryptionKeys)}::text, ${FIRST_PROVISION_STEP}::text, ${ownerId}::uuid,
              ${db.info.version}::text, 'current', now(), null
            from refused where not slug_held and not over_quota
            returning *
          ), m as (
            insert into core_memberships (id, user_id, tenant_id, role)
            select ${uuidv7()}::uuid, created_by, id, 'owner' from t where created_by is not null
          ), a as (
            insert into sys_audit_logs (id, action, actor_user_id, tenant_id, target_type, target_id, ip, user_agent, metadata)
            select ${uuidv7()}::uuid, 'tenant.created', ${actor}::uuid, id, 'tenant', id::text,
              ${input.origin?.ip ?? null}::text, ${input.origin?.userAgent?.slice(0, 512) ?? null}::text, ${metadata}::jsonb
            from t
          )
          select r.slug_held, r.over_quota, t.*, o.id as owner_id, o.email as owner_email, o.name as owner_name
          from refused r left join t on true left join core_users o on o.id = ${ownerId}::uuid`,
        // A refused check inserted nothing, so committing it writes nothing; after a failed statement it rolls back.
        conn`commit`,
      ]
      const answers = await Promise.allSettled(sent)
      const failed = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected')
      if (failed) {
        await conn`rollback`.catch(() => {}) // when commit itself was what failed, the transaction may still be open
        const code = pgCode(failed.reason)
        if (code === PG.uniqueViolation) throw conflict('SLUG_TAKEN', `slug "${t.slug}" is already taken`)
        if (code === '23503') throw badRequest('UNKNOWN_OWNER', 'the owner user does not exist')
        throw failed.reason
      }
      const [out] = (answers.at(-2) as PromiseFulfilledResult<Record<string, unknown>[]>).value
      if (!out || out.slug_held) throw conflict('SLUG_TAKEN', `slug "${t.slug}" is already taken`)
      if (out.over_quota) throw forbidden('TENANT_QUOTA_EXCEEDED', `You have created ${quota} tenants, the most allowed: delete one first`, { max: quota })
      if ((answers.at(-1) as PromiseFulfilledResult<{ command?: string }>).value.command !== 'COMMIT') throw new Error('registering the tenant rolled back')
      if (!(await lock)) throw conflict('TENANT_BUSY', `another operation on tenant ${t.id} is running; try again when it has finished`)
      const owner = out.owner_id ? { id: String(out.owner_id), email: String(out.owner_email), name: (out.owner_name as string | null) ?? null } : undefined
      return { row: tenantFromRow(out), owner }
    } finally {
      conn.release()
    }
  }

  const observe = (mode: 'inline' | 'queued', outcome: 'active' | 'failed', seconds: number) =>
    deps.metrics?.provisioningDuration.observe({ mode, outcome }, seconds)

  /**
   * A shared tenant, all in this process: registerShared (one write, the tenant's lock taken alongside),
   * then the `created` lifecycle on the row it wrote, with the owner it read. Undefined when placement has
   * several shared databases to choose from, or the one chosen is not ready: register() and runLifecycle()
   * then do it the long way (and record a failure).
   */
  async function provisionShared(input: ProvisionInput, started: number): Promise<ProvisionedTenant | undefined> {
    const slug = validateSlug(input.slug)
    const name = typeof input.name === 'string' ? input.name.trim() : ''
    if (name.length < 1 || name.length > 200) throw badRequest('INVALID_NAME', 'name must be 1-200 characters')
    // The server asked for, or the only one holding a shared database; with several, placement chooses
    // under its lock in register().
    const { home } = await sharedHomes(input.server)
    if (!home || !(await home.db.ensure().then(() => true, () => false))) return undefined
    const id = uuidv7()
    const lock = ctx.locks.acquire(id)
    const { row, owner } = await registerShared(input, { id, slug, name, planTier: input.planTier ?? 'free', home }, lock)
    // Nothing is cached for a new id here; other processes may hold its slug as unknown. Published while the lifecycle runs.
    const invalidated = catalog.invalidate(id)
    try {
      const done = await runLifecycleHeld('created', row, ctx, { actorUserId: input.actorUserId ?? input.ownerUserId, owner })
      observe('inline', 'active', (performance.now() - started) / 1000)
      return publicView(done.row!)
    } catch (err) {
      observe('inline', 'failed', (performance.now() - started) / 1000)
      throw failed(id, err)
    } finally {
      await invalidated
    }
  }

  async function provision(input: ProvisionInput): Promise<ProvisionedTenant> {
    const started = performance.now()
    if (isolationOf(input, input.planTier ?? 'free') === 'shared') {
      const done = await provisionShared(input, started)
      if (done) return done
    }
    const { id } = await register(input)
    try {
      const { row } = await runLifecycle('created', id, ctx, { actorUserId: input.actorUserId ?? input.ownerUserId })
      observe('inline', 'active', (performance.now() - started) / 1000)
      return publicView(row!)
    } catch (err) {
      observe('inline', 'failed', (performance.now() - started) / 1000)
      throw failed(id, err)
    }
  }

  async function recordFailure(tenantId: string, step: ProvisionStep, err: unknown, opts: { actorUserId?: string | undefined } = {}) {
    const error = errorMessage(err)
    if (!(await markProvisioningFailed(ctx, tenantId, { provisionStep: step, provisionError: `${step}: ${error}` })))
      throw new Error(`tenant ${tenantId} could not be marked failed; the stale sweep resumes it`)
    await writes.audit({
      action: ctx.lifecycle.events.created.failedAudit!,
      tenantId,
      actorUserId: opts.actorUserId,
      metadata: { step, error },
    })
  }

  async function retry(idOrSlug: string, opts: { actorUserId?: string } = {}): Promise<ProvisionedTenant> {
    const row = await writes.get(idOrSlug)
    if (row.status === 'active') return publicView(row)
    try {
      const done = await runLifecycle('created', row.id, ctx, { resume: true, actorUserId: opts.actorUserId })
      return publicView(done.row!)
    } catch (err) {
      throw failed(row.id, err)
    }
  }

  const step = (s: ProvisionStep) => async (tenantId: string, ownerUserId?: string) => {
    const { outcome, row } = await runLifecycle('created', tenantId, ctx, { from: s, to: s, ownerUserId })
    // The step that made it active ends a queued provisioning: from registration, queue waits included.
    if (outcome === 'done' && row!.status === 'active') observe('queued', 'active', (Date.now() - row!.createdAt.getTime()) / 1000)
    return { outcome, status: row!.status }
  }

  async function listStale(opts: { olderThanS?: number } = {}): Promise<StaleTenant[]> {
    const olderThanS = opts.olderThanS ?? staleAfterS
    const rows = await host.db
      .select({ id: tenants.id, slug: tenants.slug, provisionStep: tenants.provisionStep, updatedAt: tenants.updatedAt })
      .from(tenants)
      .where(and(eq(tenants.status, 'provisioning'), lt(tenants.updatedAt, new Date(Date.now() - olderThanS * 1000))))
      .orderBy(asc(tenants.updatedAt))
    const running = await ctx.locks.held(rows.map((r) => r.id))
    return rows.filter((r) => !running.has(r.id))
  }

  async function resumeStale(opts: { olderThanS?: number; signal?: AbortSignal } = {}): Promise<StaleSweepResult | 'busy'> {
    if (!(await ctx.locks.acquire(SWEEP_LOCK))) return 'busy'
    try {
      const result: StaleSweepResult = { resumed: [], failed: [], busy: [] }
      for (const t of await listStale(opts)) {
        // A stopping worker finishes the tenant in hand, not the whole list: the next sweep gets the rest.
        if (opts.signal?.aborted) break
        try {
          await retry(t.id)
          result.resumed.push(t.slug)
          logger.info({ tenantId: t.id, slug: t.slug, step: t.provisionStep }, 'stale provisioning resumed')
        } catch (err) {
          if (err instanceof AppError && err.code === 'TENANT_BUSY') result.busy.push(t.slug)
          else {
            const error = err instanceof AppError ? String(err.details?.error ?? err.message) : errorMessage(err)
            result.failed.push({ slug: t.slug, error })
            logger.error({ tenantId: t.id, slug: t.slug, err: error }, 'resuming a stale provisioning failed')
          }
        }
      }
      return result
    } finally {
      await ctx.locks
        .release(SWEEP_LOCK)
        .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'releasing the sweep lock failed'))
    }
  }

  return {
    register,
    isolationFor: (input) => isolationOf(input, input.planTier ?? 'free'),
    provision,
    retry,
    steps: Object.fromEntries(ctx.lifecycle.events.created.steps.map((s) => [s, step(s)])) as Provisioner['steps'],
    recordFailure,
    async run(event, idOrSlug, opts = {}) {
      const row = await writes.get(idOrSlug)
      return (await runLifecycle(event, row.id, ctx, { actorUserId: opts.actorUserId, origin: opts.origin, onlyIf: opts.onlyIf })).outcome
    },
    listStale,
    resumeStale,
    describe: async (idOrSlug) => publicView(await writes.get(idOrSlug)),
    template,
    servers,
    placement,
    shared,
    writes,
    async close() {
      await servers.close()
      await Promise.all([admin.end({ timeout: 5 }), lockSql.end({ timeout: 5 })])
    },
  }
}
