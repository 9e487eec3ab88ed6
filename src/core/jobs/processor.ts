/**
 * What a worker does with one BullMQ job: find its definition, resolve the tenant from the payload (tenant
 * jobs), take a tenant slot or step aside, validate the payload again, and run the processor while
 * keeping the job's record in step with BullMQ:
 *
 *   start            → running (retry_count = retries so far)
 *   success          → follow-ups submitted, then completed with the result (not waited for: the job
 *                      returns and the record commits with the writer's next batch, a few ms later)
 *   failure, retry   → pending, retry_count + 1, error_log = error and stack (BullMQ waits out the backoff)
 *   failure, final   → failed with error_log (also: permanent errors and payloads that fail validation)
 *   tenant at cap    → back to delayed (BullMQ DelayedError); not an attempt, the record stays pending
 *   tenant moving    → the same: its database is read-only until the move switches (tenancy/move)
 *
 * A record write that fails (its database is down) never changes the job's outcome: once the work
 * succeeded the job completes in BullMQ and the record is retried in the background (background-writes.ts),
 * or repaired later from BullMQ's state by the reconcile sweep. Failing the job over its own record would
 * run the work again.
 *
 * The tenant and its database live in this call's context object and nowhere else, so two tenants' jobs
 * running side by side on one worker cannot see each other's data.
 */
import { DelayedError, type Job, UnrecoverableError } from 'bullmq'
import type { Logger } from 'pino'
import type { Sql } from '../db/connect.js'
import { errorText } from '../lib/error-log.js'
import type { Catalog, PoolManager, TenantDb, TenantRecord } from '../tenancy/types.js'
import type { BackgroundWrites } from './background-writes.js'
import type { Effects } from './effects.js'
import { recordsFor } from './records.js'
import {
  derivedJobId,
  type FollowUp,
  type JobContext,
  type JobDefinition,
  type JobRegistry,
  type JobSubmitter,
  payloadProblems,
} from './registry.js'
import type { TenantSlots } from './tenant-slots.js'
import { isUuid } from '../lib/uuid.js'
import type { JobOutcome, ServiceMetrics } from '../lib/service-metrics.js'

/** Marks errors whose outcome is already in the job record (the worker's 'failed' listener skips them). */
const RECORDED = Symbol('tenantkit.jobRecorded')
const markRecorded = <E>(err: E): E => {
  if (typeof err === 'object' && err !== null) (err as Record<symbol, boolean>)[RECORDED] = true
  return err
}
export const isRecorded = (err: unknown) => typeof err === 'object' && err !== null && (err as Record<symbol, boolean>)[RECORDED] === true

/** error_log: the message with its stack, and the causes behind it (a failed query by SQLSTATE and table only, never its parameters). */
export const errorLog = (err: unknown): string => errorText(err)

function unrecoverable(message: string, cause?: unknown): UnrecoverableError {
  const err = new UnrecoverableError(message)
  if (cause instanceof Error && cause.stack) err.stack = `${err.name}: ${message}\n${cause.stack}`
  return err
}

export interface ProcessorDeps {
  registry: JobRegistry
  deps: unknown
  hostSql: Sql
  catalog: Catalog
  pools: PoolManager
  slots: TenantSlots
  submitter: JobSubmitter
  logger: Logger
  /** First delay when a tenant is at its cap; doubles with each bounce of the same job, up to 5 s. */
  tenantCapDelayMs: number
  /** Record writes that failed after the work was done, retried in the background. */
  writes: BackgroundWrites
  effects: Effects
  /** Counts each run's outcome by job type (services.metrics.jobOutcomes). */
  jobOutcomes?: Pick<ServiceMetrics['jobOutcomes'], 'inc'>
}

export type Processor = (job: Job, token?: string) => Promise<unknown>

export interface RecordingProcessor extends Processor {
  /**
   * Resolves once every record write a job left behind when it returned (its "completed") has been tried:
   * committed, or failed and handed to the background retries (background-writes.ts).
   */
  settled(): Promise<void>
}

/** The tenant a job's log lines name: a tenant job's own, or the tenant a system job works on (provisioning, lifecycle). */
function jobTenant(job: Job, tenantCtx: { tenant: TenantRecord } | undefined): { tenantId?: string } {
  if (tenantCtx) return { tenantId: tenantCtx.tenant.id }
  const tenantId = (job.data as { tenantId?: unknown } | undefined)?.tenantId
  return typeof tenantId === 'string' && isUuid(tenantId) ? { tenantId } : {}
}

type TenantCtx = { tenant: TenantRecord; db: TenantDb }

/** The least a tenant job waits while its tenant moves. */
const MOVING_DELAY_MS = 1000

export function createProcessor(p: ProcessorDeps): RecordingProcessor {
  const { registry, catalog, pools, slots, logger } = p

  // Record writes the jobs did not wait for (settle() never rejects: a failed write goes to the background retries).
  let outstanding = 0
  const idle: (() => void)[] = []
  const landed = () => {
    if (--outstanding === 0) for (const resolve of idle.splice(0)) resolve()
  }
  const deferred = (write: Promise<unknown>) => {
    outstanding++
    void write.then(landed, landed)
  }
  const settled = () => (outstanding === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve)))
  const counted = (job: Job, outcome: JobOutcome) => p.jobOutcomes?.inc({ job_type: job.name, outcome })

  // Bounces so far: starts that neither failed nor finished. Backing off keeps a big backlog from
  // spinning through the workers while its tenant is at the cap.
  const capDelay = (job: Job) => {
    const bounces = Math.max(0, (job.attemptsStarted ?? 1) - job.attemptsMade - 1)
    const ms = Math.min(p.tenantCapDelayMs * 2 ** Math.min(bounces, 8), 5000)
    return Math.round(ms * (0.75 + Math.random() * 0.5))
  }

  async function followUps(def: JobDefinition, job: Job, result: unknown) {
    if (!def.next) return
    const list: FollowUp[] = typeof def.next === 'string' ? [{ name: def.next, payload: job.data }] : def.next(job.data, result)
    for (const [i, f] of list.entries()) {
      await p.submitter.submit(f.name, f.payload, { id: derivedJobId(job.id!, `next:${i}:${f.name}`) })
    }
  }

  // runRecorded is the path every job takes; what only some take (a bad payload, a failure, the context's
  // logger) lives in functions of its own, which keeps the suspended job's frame and closures small (issue 14).

  /**
   * A final outcome's record: written now on the job's lease; if that fails, retried in the background, on
   * a fresh lease of the tenant's pool (the job's lease ends with the job).
   */
  function settle(what: string, job: Job, sql: Sql, tenantCtx: TenantCtx | undefined, write: (sql: Sql) => Promise<void>) {
    let first = true
    return p.writes.attempt(
      what,
      () => {
        if (first || !tenantCtx) {
          first = false
          return write(sql)
        }
        return pools.withTenant(tenantCtx.tenant, (db) => write(db.$client))
      },
      { jobId: job.id, job: job.name },
    )
  }

  function contextOf(job: Job, id: string, retries: number, tenantCtx: TenantCtx | undefined): { ctx: JobContext; log: () => Logger } {
    // Made on first use: a pino child per job was a measurable share of a short job's cost (issue 14).
    let childLogger: Logger | undefined
    const log = () => (childLogger ??= logger.child({ jobId: id, jobType: job.name, ...jobTenant(job, tenantCtx) }))
    const ctx: JobContext = {
      job,
      jobId: id,
      attempt: retries + 1,
      get logger() {
        return log()
      },
      deps: p.deps,
      submit: p.submitter.submit,
      submitMany: p.submitter.submitMany,
      submitWorkflow: p.submitter.submitWorkflow,
      once: (effect, run) => p.effects.once(id, effect, run, log()),
    }
    if (tenantCtx) Object.assign(ctx, tenantCtx)
    return { ctx, log }
  }

  async function invalidPayload(job: Job, def: JobDefinition, sql: Sql, tenantCtx: TenantCtx | undefined, problems: string[]): Promise<never> {
    const err = unrecoverable(`INVALID_JOB_PAYLOAD: ${problems.slice(0, 5).join('; ')}`)
    await settle('record failed', job, sql, tenantCtx, (s) => recordsFor(def.scope).failed(s, job.id!, job.attemptsMade, errorLog(err)))
    throw markRecorded(err)
  }

  async function attemptFailed(job: Job, def: JobDefinition, sql: Sql, tenantCtx: TenantCtx | undefined, log: () => Logger, err: unknown): Promise<never> {
    const store = recordsFor(def.scope)
    const id = job.id!
    const retries = job.attemptsMade
    const permanent = def.permanent?.(err) === true
    const final = permanent || retries + 1 >= (job.opts.attempts ?? 1)
    if (final) {
      await settle('record failed', job, sql, tenantCtx, (s) => store.failed(s, id, retries, errorLog(err)))
      log().error({ err, attempt: retries + 1, permanent }, 'job failed')
      counted(job, 'failed')
      throw markRecorded(permanent ? unrecoverable(err instanceof Error ? err.message : String(err), err) : err)
    }
    // Not retried in the background: the next attempt writes the record again, and a late "pending"
    // must not land over it.
    await store
      .retrying(sql, id, retries + 1, errorLog(err))
      .catch((writeErr) => log().warn({ err: writeErr }, 'recording a failed attempt failed; the retry records itself'))
    log().warn({ err, attempt: retries + 1 }, 'job attempt failed; will retry')
    counted(job, 'retried')
    throw markRecorded(err)
  }

  const runningFailed = (id: string) => (err: unknown) => logger.warn({ err, jobId: id }, 'marking a job running failed')

  async function runRecorded(job: Job, def: JobDefinition, sql: Sql, tenantCtx: TenantCtx | undefined) {
    const store = recordsFor(def.scope)
    const id = job.id!
    const retries = job.attemptsMade
    const problems = payloadProblems(def.payload, job.data)
    if (problems.length > 0) return invalidPayload(job, def, sql, tenantCtx, problems)
    // The running mark is sent as the job starts but not waited for: the work need not sit out a commit,
    // and the record writer keeps this record's changes in order (a later outcome never lands first).
    void store.running(sql, id, retries).catch(runningFailed(id))
    const { ctx, log } = contextOf(job, id, retries, tenantCtx)
    let result: unknown
    try {
      result = await (def.process as (ctx: JobContext, payload: unknown) => Promise<unknown>)(ctx, job.data)
      if (def.next) await followUps(def, job, result)
    } catch (err) {
      return attemptFailed(job, def, sql, tenantCtx, log, err)
    }
    counted(job, 'completed')
    const waiting = recordCompleted(job, def, sql, tenantCtx, result)
    if (waiting) await waiting
    return result
  }

  /**
   * The "completed" write is not waited for: the job returns at once (BullMQ marks it completed and hands
   * this slot its next job) and the record commits with the writer's next batch, usually merged with the
   * job's "running" into one row. Until that commit (a few ms) a reader still sees the record running;
   * settled() waits for it (workers' close does), and a process killed in that window leaves the record
   * running behind BullMQ's completed job, which the reconcile sweep completes from BullMQ's return value.
   * Returns the write only when the job must wait for it after all.
   */
  function recordCompleted(job: Job, def: JobDefinition, sql: Sql, tenantCtx: TenantCtx | undefined, result: unknown) {
    const id = job.id!
    const retries = job.attemptsMade
    const write = (s: Sql) => recordsFor(def.scope).completed(s, id, retries, result)
    if (!tenantCtx) {
      deferred(settle('record completed', job, sql, undefined, write))
      return undefined
    }
    // A tenant job's lease ends as it returns: a second lease keeps the tenant's pool open for the write.
    // Only on the same pool (the writer orders a record's changes per pool, and "running" went on this one);
    // if the pool was replaced meanwhile, the write is waited for as before.
    const hold = pools.tryAcquire(tenantCtx.tenant)
    if (hold?.db === tenantCtx.db) {
      deferred(settle('record completed', job, sql, tenantCtx, write).finally(() => hold.release()))
      return undefined
    }
    hold?.release()
    return settle('record completed', job, sql, tenantCtx, write)
  }

  function process(job: Job, token?: string): Promise<unknown> {
    const def = registry[job.name]
    if (!def) return Promise.reject(unrecoverable(`unknown job type "${job.name}"`))
    return def.scope === 'system' ? runRecorded(job, def, p.hostSql, undefined) : runTenantJob(job, def, token)
  }

  async function runTenantJob(job: Job, def: JobDefinition, token: string | undefined): Promise<unknown> {
    const tenantId = (job.data as { tenantId?: unknown } | undefined)?.tenantId
    // Without a valid tenant there is no database to hold the record: fail in BullMQ only.
    if (typeof tenantId !== 'string' || !isUuid(tenantId)) throw unrecoverable('INVALID_JOB_PAYLOAD: /tenantId is required')
    const tenant = await catalog.get(tenantId)
    if (!tenant) throw unrecoverable(`TENANT_NOT_FOUND: tenant ${tenantId} does not exist or was deleted`)
    // A moving tenant's database is read-only until the move switches (tenancy/move): the job waits, like
    // a tenant at its cap (not an attempt), and runs on the tenant's new database.
    if (tenant.moving) {
      await job.moveToDelayed(Date.now() + Math.max(capDelay(job), MOVING_DELAY_MS), token)
      throw new DelayedError()
    }

    const slot = await slots.tryAcquire(tenant.id, job.id!)
    if (!slot) {
      await job.moveToDelayed(Date.now() + capDelay(job), token)
      throw new DelayedError()
    }
    try {
      return await pools.withTenant(tenant, (db) => runRecorded(job, def, db.$client, { tenant, db }))
    } finally {
      // Not awaited: commands on one Redis connection run in order, so this process's next acquire for the
      // tenant already sees the slot free; a release lost to a Redis error expires with its lease.
      void slot.release().catch((err) => logger.warn({ err, tenantId, jobId: job.id }, 'releasing tenant slot failed'))
    }
  }

  return Object.assign(process, { settled })
}

/**
 * For failures BullMQ decides without our processor (a job stalled more often than maxStalledCount):
 * bring the record to failed too. Best effort; the error is logged either way.
 */
export async function recordUnhandledFailure(
  job: Job,
  err: Error,
  d: Pick<ProcessorDeps, 'registry' | 'hostSql' | 'catalog' | 'pools' | 'logger' | 'writes'>,
): Promise<void> {
  if (isRecorded(err)) return
  const def = d.registry[job.name]
  if (!def || !job.id) return
  const store = recordsFor(def.scope)
  const retries = Math.max(0, job.attemptsMade - 1)
  const id = job.id
  await d.writes.attempt(
    'record failed',
    async () => {
      if (def.scope === 'system') return store.failed(d.hostSql, id, retries, errorLog(err))
      const tenantId = (job.data as { tenantId?: unknown } | undefined)?.tenantId
      const tenant = typeof tenantId === 'string' && isUuid(tenantId) ? await d.catalog.get(tenantId) : undefined
      if (tenant) await d.pools.withTenant(tenant, (db) => store.failed(db.$client, id, retries, errorLog(err)))
    },
    { jobId: id, job: job.name },
  )
}
