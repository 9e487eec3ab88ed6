/**
 * What happens to a tenant, in one map: each lifecycle event lists its steps in order (the stancl/tenancy
 * idea). CORE_LIFECYCLE holds the engine's own steps; features add theirs next to a named step
 * (billing: cancelBilling before markDeleted; tenants: sendWelcomeEmail after seedOwner), and
 * assembleLifecycle() puts them in place. The kit's assembled map is `services.lifecycle`
 * (printed by `npm run tenants -- lifecycle`); the step implementations follow it. Every step is
 * idempotent, so a run that dies anywhere can simply be run again from the step it recorded; the jobs
 * layer runs the same steps one BullMQ job each. An event whose end state the tenant is already in
 * (`done`) is a no-op success, so a redelivered job or a repeated command never fails a tenant that is
 * fine. One run at a time per tenant, across processes (a second one gets 409 TENANT_BUSY). Every
 * transition writes the audit log, and every catalog write invalidates the catalog cache in all
 * processes (CatalogWrites does that).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { eq } from 'drizzle-orm'
import type { Logger } from 'pino'
import { uuidv7 } from 'uuidv7'
import { type Tenant, type TenantStatus, users } from '../../../drizzle/host/schema.js'
import { quoteIdent, type Sql } from '../db/connect.js'
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import type { JobSubmitter } from '../jobs/registry.js'
import { conflict, notFound, PG, pgCode } from '../lib/errors.js'
import type { AuditOrigin, CatalogWrites, TenantPatch } from './catalog-writes.js'
import { errorMessage } from '../lib/error-log.js'
import { migrateTenant } from './fleet.js'
import type { SharedDatabase } from './shared/shared-database.js'
import { DEFAULT_DB_SERVER, type ServerRegistry } from './servers.js'
import type { TenantTemplate } from './template.js'
import type { PoolManager, PoolTargetOf } from './types.js'
import { isUuid } from '../lib/uuid.js'
import { movingConflict, openMoveOf } from './moving.js'

export { movingConflict, openMoveOf }

export const CORE_LIFECYCLE = {
  created: {
    from: ['provisioning', 'failed'],
    // Features add steps before 'activate' (e.g. the welcome email), so 'active' still means "every step
    // is done" and a step that fails leaves the tenant retryable rather than active with it missing.
    steps: ['createDatabase', 'migrate', 'seedOwner', 'activate'],
    // A suspended tenant was active once: every provisioning step is behind it.
    done: ['active', 'suspended'],
    audit: 'tenant.provisioned',
    failedAudit: 'tenant.provision_failed',
    // Progress and failure are kept in the catalog (provision_step, status 'failed') so retry resumes.
    tracked: true,
  },
  suspended: { from: ['active'], done: ['suspended'], steps: ['markSuspended', 'evictPools'], audit: 'tenant.suspended' },
  resumed: { from: ['suspended'], done: ['active'], steps: ['markActive'], audit: 'tenant.resumed' },
  softDeleted: {
    from: ['active', 'suspended', 'failed', 'provisioning'],
    done: ['deleted'],
    steps: ['markDeleted', 'evictPools'],
    audit: 'tenant.deleted',
    // A moving tenant is not deleted under its move (move/mover.ts): 409 MOVE_IN_PROGRESS until it ends.
    refusedWhileMoving: true,
  },
  // Undo a soft delete (the database was kept): active again, deleted_at cleared. Billing cancelled at
  // deletion (features' cancelBilling) is NOT restarted: the owner subscribes again, or an operator comps a plan.
  restored: { from: ['deleted'], done: ['active'], steps: ['markRestored'], audit: 'tenant.restored' },
  // Close our pools before the drop; WITH (FORCE) ends any other process' connections. Every DROP DATABASE
  // forces a checkpoint, so fleets of hard deletes belong in a background job, not on a request path.
  // Done once the catalog row is gone (a run that finds no row under the lock is a no-op success).
  hardDeleted: {
    from: ['active', 'suspended', 'failed', 'provisioning', 'deleted'],
    done: [],
    steps: ['evictPools', 'dropDatabase', 'deleteCatalogRow'],
    audit: 'tenant.hard_deleted',
    // Dropping the database (or erasing the rows) a move is copying would leave the move copying nothing,
    // or switching the catalog to a copy of a tenant that is gone: refused while a move is open.
    refusedWhileMoving: true,
  },
} as const satisfies Record<string, EventSpec<CoreStepName>>

export interface EventSpec<S extends string = string> {
  from: readonly TenantStatus[]
  /** Statuses in which the event has already happened: running it again changes nothing and succeeds. */
  done: readonly TenantStatus[]
  steps: readonly S[]
  audit: string
  failedAudit?: string
  tracked?: boolean
  /**
   * Refused (409 MOVE_IN_PROGRESS) while the tenant has an open move (core_tenant_moves, state running),
   * checked under the tenant lock, which a move also takes to start and to run: the deletions. Suspend,
   * resume and rename only change catalog fields a move leaves alone, so they run during a move.
   */
  refusedWhileMoving?: boolean
}

export type LifecycleEvent = keyof typeof CORE_LIFECYCLE
export type CoreStepName =
  | 'createDatabase'
  | 'migrate'
  | 'seedOwner'
  | 'activate'
  | 'markSuspended'
  | 'markActive'
  | 'markDeleted'
  | 'markRestored'
  | 'evictPools'
  | 'dropDatabase'
  | 'deleteCatalogRow'
/** A step of some event: the core's, or one a feature contributed. */
export type StepName = string
export type ProvisionStep = StepName

/**
 * A step a feature adds to an event, placed right before or after one of the event's steps (a core
 * step or one contributed earlier in the feature list). `run` gets the catalog row and may return the
 * catalog fields it changes; it must be idempotent like every step.
 */
export interface LifecycleStepContribution {
  event: LifecycleEvent
  step: string
  before?: StepName
  after?: StepName
  /**
   * Starts together with the step before it instead of after it: for a step that needs nothing that step
   * writes (the welcome email beside seedOwner). If either fails, the first failing one in order is the
   * step recorded, and a retry runs from there.
   */
  concurrent?: boolean
  run: Step
}

/** The events with every step in place, and every step's implementation. */
export interface AssembledLifecycle {
  events: { readonly [E in LifecycleEvent]: EventSpec }
  steps: Readonly<Record<StepName, Step>>
  /** Steps that start together with the step before them (LifecycleStepContribution.concurrent). */
  concurrent?: ReadonlySet<StepName>
}

/** CORE_LIFECYCLE with the features' steps put in place; a clash or an unknown anchor is a boot error. */
export function assembleLifecycle(contributions: readonly LifecycleStepContribution[] = []): AssembledLifecycle {
  const events = {} as Record<LifecycleEvent, EventSpec & { steps: string[] }>
  for (const [event, spec] of Object.entries(CORE_LIFECYCLE) as [LifecycleEvent, EventSpec][]) events[event] = { ...spec, steps: [...spec.steps] }
  const steps: Record<string, Step> = { ...CORE_STEPS }
  const concurrent = new Set<StepName>()
  for (const c of contributions) {
    if (c.concurrent) concurrent.add(c.step)
    const spec = events[c.event]
    if (!spec) throw new Error(`lifecycle step ${c.step}: no event "${c.event}"`)
    if (spec.steps.includes(c.step)) throw new Error(`lifecycle step ${c.step} is in "${c.event}" already`)
    if (steps[c.step] && steps[c.step] !== c.run) throw new Error(`lifecycle step ${c.step} has two implementations`)
    const anchor = c.before ?? c.after
    const at = anchor === undefined ? -1 : spec.steps.indexOf(anchor)
    if (at < 0 || (c.before !== undefined) === (c.after !== undefined)) {
      throw new Error(`lifecycle step ${c.step}: name exactly one of before/after, a step of "${c.event}" (${spec.steps.join(', ')})`)
    }
    spec.steps.splice(c.before !== undefined ? at : at + 1, 0, c.step)
    steps[c.step] = c.run
  }
  // The first provisioning step is where a new tenant's record starts (and its first job): the core's.
  if (events.created.steps[0] !== CORE_LIFECYCLE.created.steps[0]) throw new Error('no lifecycle step may come before createDatabase')
  return { events, steps, concurrent }
}

/** The first step of every provisioning (a new catalog row records it as its progress). */
export const FIRST_PROVISION_STEP = CORE_LIFECYCLE.created.steps[0]

/** Test hooks: throw from one to simulate a crash before a step, or after its work but before it is recorded. */
export interface LifecycleFaults {
  beforeStep?: (step: StepName, tenantId: string) => void | Promise<void>
  afterStep?: (step: StepName, tenantId: string) => void | Promise<void>
}

export interface LifecycleContext {
  host: HostDatabase
  pools: PoolManager
  writes: CatalogWrites
  locks: TenantLocks
  /** A pool on the default server's maintenance database (servers.admin(name) for a tenant's own server). */
  admin: Sql
  /** The default server's template: its info and folder are every server's (servers.template(name) builds each server's). */
  template: TenantTemplate
  /** The database servers: each tenant's database is created, and dropped, on the server its catalog row names. */
  servers: ServerRegistry
  /** The shared database of shared-isolation tenants; undefined when SHARED_DATABASE_URL is unset. */
  shared?: SharedDatabase | undefined
  logger: Logger
  /** The events and their steps, features' included. */
  lifecycle: AssembledLifecycle
  /** For features' steps: links (appBaseUrl), Stripe, … */
  config: Pick<Config, 'appBaseUrl'> & Partial<Pick<Config, 'stripe'>>
  /** Where steps submit jobs (e.g. the welcome email): the services' task manager. */
  tasks: Pick<JobSubmitter, 'submit'>
  faults?: LifecycleFaults | undefined
  /** How long a failed run keeps trying to record its failure (the database may be what failed). */
  failureMark?: Partial<FailureMarkPolicy> | undefined
}

export interface FailureMarkPolicy {
  /** Give up after this long: the tenant stays 'provisioning' and the stale sweep finishes it. */
  deadlineMs: number
  /** First wait between attempts; doubles each time, at most 2 s. */
  firstDelayMs: number
}

export const DEFAULT_FAILURE_MARK: FailureMarkPolicy = { deadlineMs: 15_000, firstDelayMs: 200 }

/** What a run did: ran its steps, or found the tenant already where the event leads (nothing written). */
export type RunOutcome = 'done' | 'already_done'

export interface RunResult {
  outcome: RunOutcome
  /** The catalog row as the run left it (undefined once hard deleted). */
  row: Tenant | undefined
}

export interface RunOptions {
  /** Start at this step; earlier steps are taken as done. */
  from?: StepName
  /** Start at the step recorded in the catalog (provision_step): how a failed or interrupted provisioning resumes. */
  resume?: boolean
  /** Stop after this step (one job per step). */
  to?: StepName
  actorUserId?: string | undefined
  /** Where the request that asked for the run came from (the audit entry's ip and user agent). */
  origin?: AuditOrigin | undefined
  /** seedOwner (and feature steps such as the welcome email): the owner; defaults to the tenant's created_by. */
  ownerUserId?: string | undefined
  /** The owner, already read (a shared tenant's registration reads it in the same statement): saves lifecycleOwner its query. */
  owner?: LifecycleOwner | undefined
  /**
   * Checked on the row read under the tenant lock: false → 409 PRECONDITION_FAILED and nothing runs. A
   * scheduled purge passes "still deleted, long enough ago", so a tenant restored since it was listed is never dropped.
   */
  onlyIf?: ((row: Tenant) => boolean) | undefined
}

/**
 * A step does its work and returns the catalog fields it changes; the runner writes them together with
 * the progress marker in one UPDATE (and one cache invalidation). `row` is the catalog row as read when
 * the run started, plus the runner's own writes: the fields steps use (id, names, URL, owner) never change.
 */
export type Step = (row: Tenant, ctx: LifecycleContext, opts: RunOptions) => Promise<TenantPatch | undefined>

/** The shared database of the tenant's server, or a clear error when that server has none (configured). */
async function sharedOf(ctx: LifecycleContext, row: Pick<Tenant, 'server'>): Promise<SharedDatabase> {
  const shared = row.server === DEFAULT_DB_SERVER ? ctx.shared : await ctx.servers.shared(row.server)
  if (!shared)
    throw new Error(`tenant is in a shared database on server "${row.server}", but that server has none configured (SHARED_DATABASE_URL, servers add --shared-url)`)
  return shared
}

/** The pool manager's view of a catalog row. */
export const poolTarget = (row: Tenant, ctx: Pick<LifecycleContext, 'writes'>): PoolTargetOf => ({
  id: row.id,
  dbUrl: ctx.writes.dbUrl(row),
  poolerUrl: undefined,
  maxConnections: row.maxConnections ?? undefined,
  isolation: row.isolation,
  server: row.server,
})

/** The tenant's owner as the `created` steps need them (seedOwner, the welcome email). */
export interface LifecycleOwner {
  id: string
  email: string
  name: string | null
}
const owners = new WeakMap<RunOptions, Promise<LifecycleOwner | undefined>>()

/**
 * The run's owner (opts.ownerUserId, else the tenant's created_by), read once per run: the steps of one
 * run share their RunOptions object, so seedOwner and the features' steps after it cost one query, not one
 * each. Undefined when there is none (a tenant made without --owner, or an owner deleted since).
 */
export function lifecycleOwner(row: Pick<Tenant, 'createdBy'>, ctx: Pick<LifecycleContext, 'host'>, opts: RunOptions): Promise<LifecycleOwner | undefined> {
  let owner = owners.get(opts)
  if (!owner) {
    const ownerId = opts.ownerUserId ?? row.createdBy
    owner = opts.owner && opts.owner.id === ownerId
      ? Promise.resolve(opts.owner)
      : ownerId
      ? ctx.host.db
          .select({ id: users.id, email: users.email, name: users.name })
          .from(users)
          .where(eq(users.id, ownerId))
          .then(([found]) => found)
      : Promise.resolve(undefined)
    // A failed read is not kept: a retried step reads again.
    owner.catch(() => owners.delete(opts))
    owners.set(opts, owner)
  }
  return owner
}

// Each step covers both isolation modes: a shared tenant's "database" is its rows in the shared database.
const CORE_STEPS: Record<CoreStepName, Step> = {
  async createDatabase(row, ctx) {
    if (row.isolation === 'shared') {
      // Created, migrated and sharedified once per process; a new tenant is rows, not a database.
      const shared = await sharedOf(ctx, row)
      await shared.ensure()
      // Registered once the shared database was ready: written current already, nothing to record.
      if (row.migrationVersion === shared.info.version && row.migrationStatus === 'current') return undefined
      return { migrationVersion: shared.info.version, migrationStatus: 'current', migratedAt: new Date(), migrationError: null }
    }
    // The tenant's own server, from that server's template (each server has its own, built on first use).
    const [admin, serverTemplate] = await Promise.all([ctx.servers.admin(row.server), ctx.servers.template(row.server)])
    const template = await serverTemplate.ensure()
    try {
      await admin.unsafe(`create database ${quoteIdent(row.dbName)} template ${quoteIdent(template)}`)
    } catch (err) {
      // The name is derived from this tenant's id and recorded in its catalog row: an existing database
      // is the one an interrupted run created. Leave its version unknown so the migrate step checks it.
      if (pgCode(err) === PG.duplicateDatabase) return undefined
      throw err
    }
    // A fresh clone is exactly the template: current by construction, so migrate needs no connection.
    return { migrationVersion: ctx.template.info.version, migrationStatus: 'current', migratedAt: new Date(), migrationError: null }
  },

  async migrate(row, ctx) {
    const { info, folder } = ctx.template
    const outcome = await migrateTenant(row, { writes: ctx.writes, info, folder, pools: ctx.pools, shared: (server) => sharedOf(ctx, { server }), host: ctx.host })
    // Already written by migrateTenant; returned so the runner's copy of the row stays true.
    return outcome === 'migrated'
      ? { migrationVersion: info.version, migrationStatus: 'current', migratedAt: new Date(), migrationError: null }
      : undefined
  },

  async seedOwner(row, ctx, opts) {
    const owner = await lifecycleOwner(row, ctx, opts)
    const tenant = poolTarget(row, ctx)
    // One statement (so one round trip, and atomic): the owner as local admin, and the single settings row.
    await ctx.pools.withTenant(tenant, async (db) => {
      const sql = db.$client
      if (!owner) {
        await sql`insert into core_settings (id) select ${uuidv7()} where not exists (select 1 from core_settings)`
        return
      }
      // Update, else insert: no ON CONFLICT on global_user_id, whose unique index leads with tenant_id in the shared layout.
      await sql`
        with promoted as (
          update core_tenant_users set role = 'admin', email = ${owner.email}, name = ${owner.name}, updated_at = now()
          where global_user_id = ${owner.id}
          returning 1
        ), seeded as (
          insert into core_tenant_users (id, global_user_id, email, name, role)
          select ${uuidv7()}, ${owner.id}, ${owner.email}, ${owner.name}, 'admin' where not exists (select 1 from promoted)
          returning 1
        )
        insert into core_settings (id) select ${uuidv7()} where not exists (select 1 from core_settings)`
    })
    return undefined
  },

  activate: async () => ({ status: 'active', provisionStep: null, provisionError: null }),
  markSuspended: async () => ({ status: 'suspended' }),
  markActive: async () => ({ status: 'active' }),
  markDeleted: async () => ({ status: 'deleted', deletedAt: new Date() }),
  markRestored: async () => ({ status: 'active', deletedAt: null }),
  async evictPools(row, ctx) {
    await ctx.pools.evict(row.id)
    return undefined
  },

  async dropDatabase(row, ctx) {
    if (row.isolation === 'shared') {
      // Erasure: every row of the tenant, through its own scoped handle, then checked gone (erase throws otherwise).
      const shared = await sharedOf(ctx, row)
      const deleted = await ctx.pools.withTenant(poolTarget(row, ctx), (db) => shared.erase(db))
      ctx.logger.info({ tenantId: row.id, deleted }, 'shared tenant rows erased')
      return undefined
    }
    await (await ctx.servers.admin(row.server)).unsafe(`drop database if exists ${quoteIdent(row.dbName)} with (force)`)
    return undefined
  },

  async deleteCatalogRow(row, ctx) {
    await ctx.writes.remove(row.id)
    return undefined
  },
}

/**
 * Run an event's steps for one tenant (or a slice of them: resume with `from`/`resume`, one step with
 * from = to). A tenant already in one of the event's `done` statuses is left alone: 'already_done'.
 */
export async function runLifecycle(
  event: LifecycleEvent,
  tenantId: string,
  ctx: LifecycleContext,
  opts: RunOptions = {},
): Promise<RunResult> {
  const spec = ctx.lifecycle.events[event]
  const id = isUuid(tenantId) ? tenantId.toLowerCase() : (await ctx.writes.get(tenantId)).id
  if (!(await ctx.locks.acquire(id))) {
    throw conflict('TENANT_BUSY', `another operation on tenant ${id} is running; try again when it has finished`)
  }
  const release = releaseOnce(ctx, id)
  try {
    return await runLocked(spec, event, id, ctx, opts, release)
  } finally {
    await release()
  }
}

/**
 * runLifecycle for a tenant whose lock (ctx.locks) the caller already holds and whose catalog row it wrote
 * itself under that lock (a shared tenant's registration takes the lock before its row commits), so the
 * row needs no second read. Releases the lock when done, like runLifecycle.
 */
export async function runLifecycleHeld(event: LifecycleEvent, row: Tenant, ctx: LifecycleContext, opts: RunOptions = {}): Promise<RunResult> {
  const release = releaseOnce(ctx, row.id)
  try {
    return await runLocked(ctx.lifecycle.events[event], event, row.id, ctx, opts, release, row)
  } finally {
    await release()
  }
}

/**
 * The run's lock release, done once: early (with its last write's invalidation) or when the run ends.
 * Never twice: by then another run in this process may hold the same tenant's lock.
 */
function releaseOnce(ctx: LifecycleContext, id: string): () => Promise<void> {
  let released: Promise<void> | undefined
  return () => {
    released ??= releaseTenantLock(ctx, id)
    return released
  }
}

async function releaseTenantLock(ctx: LifecycleContext, id: string): Promise<void> {
  // Bounded: with the database down the unlock may never be answered, and the run's own error must
  // reach the caller. A lock whose session died is released by Postgres anyway.
  await withDeadline(ctx.locks.release(id), RELEASE_DEADLINE_MS, 'releasing the tenant lock').catch((err: unknown) =>
    ctx.logger.warn({ tenantId: id, err: errorMessage(err) }, 'releasing the tenant lock failed'),
  )
}

const RELEASE_DEADLINE_MS = 5000

/** Reject after `ms` if `work` has not settled (the work itself goes on; callers must tolerate that). */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), Math.max(0, ms))
  })
  return Promise.race([work, expired]).finally(() => clearTimeout(timer))
}

/**
 * Mark a provisioning run failed, retried with backoff until the policy's deadline: the write needs the
 * host database, which is often what just failed. Each attempt has its own deadline too, since a
 * query can sit in a reconnecting pool's queue for long. Guarded by status (CatalogWrites.markFailed),
 * so a late attempt can never turn a tenant another run has finished back into 'failed'.
 * Resolves false when it gave up: the tenant stays 'provisioning' until the stale sweep resumes it.
 */
export async function markProvisioningFailed(
  ctx: Pick<LifecycleContext, 'writes' | 'logger' | 'failureMark'>,
  tenantId: string,
  patch: { provisionStep: string | undefined; provisionError: string },
): Promise<boolean> {
  const policy = { ...DEFAULT_FAILURE_MARK, ...ctx.failureMark }
  const deadline = performance.now() + policy.deadlineMs
  let delay = policy.firstDelayMs
  for (let attempt = 1; ; attempt++) {
    try {
      await ctx.writes.markFailed(tenantId, patch, Math.max(deadline - performance.now(), 1))
      return true
    } catch (err) {
      if (performance.now() + delay >= deadline) {
        ctx.logger.error(
          { tenantId, attempts: attempt, err: errorMessage(err) },
          'could not mark the tenant failed; it stays provisioning until the stale sweep (or tenants retry) resumes it',
        )
        return false
      }
      await sleep(delay)
      delay = Math.min(delay * 2, 2000)
    }
  }
}

async function runLocked(
  spec: EventSpec,
  event: LifecycleEvent,
  id: string,
  ctx: LifecycleContext,
  opts: RunOptions,
  release: () => Promise<void>,
  written?: Tenant,
): Promise<RunResult> {
  // Read under the lock: the status and recorded step are now ours alone (or written under it by the caller).
  const found = written ?? (await ctx.writes.find(id))
  // Hard deleted by a run that held the lock before us (the caller looked the tenant up first).
  if (!found && event === 'hardDeleted') return { outcome: 'already_done', row: undefined }
  if (!found) throw notFound('TENANT_NOT_FOUND', `no tenant "${id}"`)
  const first = found
  let row = first
  if (spec.done.includes(first.status)) {
    ctx.logger.info({ tenantId: id, event, status: first.status, from: opts.from, to: opts.to }, 'tenant lifecycle: already done')
    return { outcome: 'already_done', row: first }
  }
  if (opts.onlyIf && !opts.onlyIf(first)) {
    throw conflict('PRECONDITION_FAILED', `tenant "${first.slug}" changed since it was chosen for "${event}"; not run`)
  }
  if (!spec.from.includes(first.status)) {
    throw conflict('INVALID_TRANSITION', `tenant "${first.slug}" is ${first.status}; "${event}" needs ${spec.from.join(' or ')}`)
  }
  if (spec.refusedWhileMoving) {
    const move = await openMoveOf(ctx.host, id)
    if (move) throw movingConflict(first.slug, event, move)
  }
  if (spec.tracked && first.status === 'failed') {
    await ctx.writes.update(id, { status: 'provisioning', provisionError: null })
    row = { ...row, status: 'provisioning', provisionError: null }
  }
  const from = opts.resume ? ((first.provisionStep ?? undefined) as StepName | undefined) : opts.from
  const start = from ? Math.max(0, spec.steps.indexOf(from)) : 0
  const end = opts.to ? spec.steps.indexOf(opts.to) + 1 || spec.steps.length : spec.steps.length
  const started = performance.now()
  let current: StepName | undefined
  // Progress (provision_step) rides along with the next catalog write instead of costing one of its own:
  // a run that dies before it is written resumes one idempotent step earlier, which is still correct.
  let progress: TenantPatch = {}
  // The run's audit entry, once every step of the event is done: in the transaction of the last catalog
  // write when there is one (one round trip for both), else on its own after the steps.
  const complete = end === spec.steps.length
  let audited = false
  const auditEntry = () => ({
    action: spec.audit,
    tenantId: id,
    actorUserId: opts.actorUserId,
    origin: opts.origin,
    metadata: { slug: first.slug, ms: Math.round(performance.now() - started) },
  })
  try {
    for (let i = start; i < end; ) {
      // A step, and the concurrent steps right after it, started together.
      let j = i + 1
      while (j < end && ctx.lifecycle.concurrent?.has(spec.steps[j]!)) j++
      const group = spec.steps.slice(i, j)
      current = group[0]
      const results = await Promise.allSettled(
        group.map(async (step) => {
          await ctx.faults?.beforeStep?.(step, id)
          const patch = await ctx.lifecycle.steps[step]!(row, ctx, opts)
          await ctx.faults?.afterStep?.(step, id)
          return patch
        }),
      )
      const failedAt = results.findIndex((r) => r.status === 'rejected')
      if (failedAt !== -1) {
        current = group[failedAt]
        throw (results[failedAt] as PromiseRejectedResult).reason
      }
      const patches = results.map((r) => (r as PromiseFulfilledResult<TenantPatch | undefined>).value).filter((p) => p !== undefined)
      const patch = patches.length ? (Object.assign({}, ...patches) as TenantPatch) : undefined
      i = j
      const next = spec.steps[i]
      if (spec.tracked && next) progress = { provisionStep: next }
      const last = i === end
      const write: TenantPatch = patch || last ? { ...progress, ...patch } : {}
      if (Object.keys(write).length) {
        const entry = last && complete ? auditEntry() : undefined
        // The run's last write committed: its tenant lock can go back while the invalidation is published.
        await ctx.writes.update(id, write, entry, last ? { whileInvalidating: release } : undefined)
        audited = entry !== undefined
        row = { ...row, ...write } as Tenant
        progress = {}
      }
    }
  } catch (err) {
    const error = errorMessage(err)
    ctx.logger.error({ tenantId: id, event, step: current, err: error }, 'tenant lifecycle step failed')
    const marked = spec.tracked
      ? await markProvisioningFailed(ctx, id, { provisionStep: current, provisionError: `${current}: ${error}` })
      : true
    // The audit entry is worth one try, not the step's own error: that is what the caller must see.
    if (marked) {
      await ctx.writes
        .audit({
          action: spec.failedAudit ?? `${spec.audit}_failed`,
          tenantId: id,
          actorUserId: opts.actorUserId,
          origin: opts.origin,
          metadata: { slug: first.slug, step: current, error },
        })
        .catch((auditErr: unknown) =>
          ctx.logger.warn({ tenantId: id, err: errorMessage(auditErr) }, 'auditing a failed lifecycle run failed'),
        )
    }
    throw spec.tracked ? Object.assign(err instanceof Error ? err : new Error(error), { [FAILURE_MARKED]: marked }) : err
  }
  if (complete) {
    const ms = Math.round(performance.now() - started)
    if (!audited) await ctx.writes.audit(auditEntry())
    ctx.logger.info({ tenantId: id, slug: first.slug, event, ms }, spec.audit)
  }
  return { outcome: 'done', row: event === 'hardDeleted' && end === spec.steps.length ? undefined : row }
}

/** Set on a provisioning run's error: whether the tenant could be marked failed (false: still 'provisioning'). */
export const FAILURE_MARKED = Symbol('tenantkit.failureMarked')
export const failureMarked = (err: unknown): boolean | undefined =>
  typeof err === 'object' && err !== null ? ((err as Record<symbol, boolean | undefined>)[FAILURE_MARKED] ?? undefined) : undefined

/** Serialises lifecycle runs per tenant, across processes. */
export interface TenantLocks {
  /** false when another run holds the tenant. */
  acquire(tenantId: string): Promise<boolean>
  release(tenantId: string): Promise<void>
  /** Those of these tenants a run (in any process) holds right now. */
  held(tenantIds: readonly string[]): Promise<Set<string>>
}

/**
 * Session advisory locks held on ONE dedicated connection (`sql` must be a max-1 pool on the maintenance
 * database, where every process takes them), plus an in-process set because a session re-enters its own
 * locks. Holding a pooled connection per run instead could starve the pool the run itself needs. A
 * process that dies releases its locks with its connection, so a crashed provisioning can be retried.
 */
export function createTenantLocks(sql: Sql): TenantLocks {
  const held = new Set<string>()
  const key = (tenantId: string) => `tenantkit:tenant:${tenantId}`
  return {
    async acquire(tenantId) {
      if (held.has(tenantId)) return false
      held.add(tenantId)
      try {
        const [row] = await sql<{ ok: boolean }[]>`select pg_try_advisory_lock(hashtextextended(${key(tenantId)}, 0)) as ok`
        if (!row?.ok) held.delete(tenantId)
        return Boolean(row?.ok)
      } catch (err) {
        held.delete(tenantId)
        throw err
      }
    },
    async release(tenantId) {
      if (!held.delete(tenantId)) return
      await sql`select pg_advisory_unlock(hashtextextended(${key(tenantId)}, 0))`
    },
    async held(tenantIds) {
      if (tenantIds.length === 0) return new Set()
      // pg_locks shows a bigint advisory key as two unsigned 32-bit halves (classid high, objid low).
      // Ids go in as one comma-separated string: this pool fetches no array types (fetch_types off).
      const rows = await sql<{ id: string }[]>`
        select t.id from unnest(string_to_array(${tenantIds.join(',')}, ',')) as t(id)
        cross join lateral (select hashtextextended('tenantkit:tenant:' || t.id, 0) as k) h
        where exists (
          select 1 from pg_locks l
          where l.locktype = 'advisory' and l.granted and l.objsubid = 1
            and l.database = (select oid from pg_database where datname = current_database())
            and l.classid::bigint = ((h.k >> 32) & 4294967295) and l.objid::bigint = (h.k & 4294967295))`
      return new Set(rows.map((r) => r.id))
    },
  }
}
