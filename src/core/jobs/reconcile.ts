/**
 * The reconcile sweep: brings job records (Postgres) and the queue (Redis) back in step when one of them
 * lost a write.
 *
 * For every record still pending or running whose last change is older than `olderThanMs`:
 *   - BullMQ doesn't know the job (Redis restarted without persistence, or an enqueue that never landed)
 *     → queue it again under the same id. Ids are the record ids, so a re-add of a job BullMQ does know
 *     is a no-op; a job that was running when Redis lost it runs again, as after any stalled worker
 *     (jobs are at-least-once; side effects go through ctx.once).
 *   - BullMQ finished it (the record write after the work was lost, e.g. the worker died while Postgres
 *     was down) → completed with BullMQ's return value, or failed with its reason.
 *   - waiting, delayed, active → left alone.
 *
 * The worker runs it every JOB_RECONCILE_INTERVAL_MS (system records each time, tenant databases every
 * TENANT_SWEEP_EVERY-th time, since that visits every tenant's database); a Redis lock lets one worker
 * of a deployment sweep at a time.
 */
import type { JobsOptions, Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Sql } from '../db/connect.js'
import type { Catalog, PoolManager } from '../tenancy/types.js'
import type { Queues } from './queues.js'
import { type RecordStore, systemRecords, tenantRecords } from './records.js'
import type { JobDefinition, JobRegistry, JobScope } from './registry.js'

export interface ReconcileCounts {
  /** Stale records looked at. */
  checked: number
  /** Queued again: BullMQ did not know them. */
  requeued: number
  /** Records brought to BullMQ's finished state. */
  completed: number
  failed: number
  /** Records of job types this process has no definition for (left to a worker that has). */
  unknownType: number
}

export interface ReconcileDeps {
  registry: JobRegistry
  queues: Queues
  hostSql: Sql
  catalog: Catalog
  pools: PoolManager
  logger: Logger
  jobOptions(def: JobDefinition, id: string): JobsOptions
}

export interface ReconcileOptions {
  /** Only records unchanged for this long (a just-submitted record may not have reached Redis yet). */
  olderThanMs: number
  /** At most this many records per database per sweep (default 500). */
  limit?: number
  /** Also sweep every active or suspended tenant's tenant_jobs (default false). */
  tenants?: boolean
}

const zero = (): ReconcileCounts => ({ checked: 0, requeued: 0, completed: 0, failed: 0, unknownType: 0 })

function add(into: ReconcileCounts, more: ReconcileCounts) {
  for (const k of Object.keys(into) as (keyof ReconcileCounts)[]) into[k] += more[k]
}

async function sweepRecords(
  d: ReconcileDeps,
  scope: JobScope,
  store: RecordStore,
  sql: Sql,
  o: ReconcileOptions,
): Promise<ReconcileCounts> {
  const counts = zero()
  const queue: Queue = d.queues.byScope(scope)
  for (const record of await store.stale(sql, o.olderThanMs, o.limit ?? 500)) {
    counts.checked++
    const job = await queue.getJob(record.id)
    if (!job) {
      const def = Object.hasOwn(d.registry, record.jobType) ? d.registry[record.jobType] : undefined
      if (!def || def.scope !== scope) {
        counts.unknownType++
        continue
      }
      await queue.add(record.jobType, record.payload, d.jobOptions(def, record.id))
      counts.requeued++
      d.logger.warn({ jobId: record.id, job: record.jobType, status: record.status }, 'job record had no job in the queue; queued it again')
      continue
    }
    const state = await job.getState()
    const retries = Math.max(0, job.attemptsMade - 1)
    if (state === 'completed') {
      await store.completed(sql, record.id, retries, job.returnvalue ?? null)
      counts.completed++
    } else if (state === 'failed') {
      const log = [job.failedReason, ...(job.stacktrace ?? [])].filter(Boolean).join('\n')
      await store.failed(sql, record.id, retries, log || 'failed (reason unknown)')
      counts.failed++
    }
  }
  return counts
}

export async function reconcileJobRecords(d: ReconcileDeps, o: ReconcileOptions): Promise<ReconcileCounts> {
  const counts = await sweepRecords(d, 'system', systemRecords, d.hostSql, o)
  if (!o.tenants) return counts
  const ids = await d.hostSql<{ id: string }[]>`select id from core_tenants where status in ('active', 'suspended') order by id`
  for (const { id } of ids) {
    try {
      const tenant = await d.catalog.get(id)
      if (!tenant) continue
      add(counts, await d.pools.withTenant(tenant, (db) => sweepRecords(d, 'tenant', tenantRecords, db.$client, o)))
    } catch (err) {
      // One tenant's database being unreachable doesn't stop the others.
      d.logger.warn({ err, tenantId: id }, 'reconciling a tenant job records failed')
    }
  }
  return counts
}

/** After this many system sweeps, one sweep also visits every tenant database. */
export const TENANT_SWEEP_EVERY = 10

export interface ReconcileLoop {
  /** Runs one sweep now (if no other worker holds the lock; tenant databases too when `tenants`, else every TENANT_SWEEP_EVERY-th sweep); resolves with its counts, or undefined if skipped. */
  runOnce(tenants?: boolean): Promise<ReconcileCounts | undefined>
  stop(): Promise<void>
}

/** The periodic sweep, one worker of the deployment at a time (a Redis lock held for an interval). */
export function startReconcileLoop(
  d: ReconcileDeps & { redis: Redis; lockKey: string },
  o: { intervalMs: number; olderThanMs: number },
): ReconcileLoop {
  // Sweeps this process ran (held the lock), not timer ticks: the lock outlives short intervals (1 s at
  // least), and counting ticks would let the lock's period phase-lock with TENANT_SWEEP_EVERY so that
  // the sweeps that run are never the tenant ones.
  let sweeps = 0
  let current: Promise<unknown> | undefined
  let stopped = false

  async function runOnce(tenantsNow?: boolean): Promise<ReconcileCounts | undefined> {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`
    // Held for most of an interval: other workers skip this round; released early by nobody (a sweep
    // is cheap when nothing is stale, and the next round is the next interval anyway).
    const got = await d.redis.set(d.lockKey, token, 'PX', Math.max(1000, Math.floor(o.intervalMs * 0.9)), 'NX')
    if (got !== 'OK') return undefined
    const tenants = tenantsNow ?? ++sweeps % TENANT_SWEEP_EVERY === 0
    const started = Date.now()
    const counts = await reconcileJobRecords(d, { olderThanMs: o.olderThanMs, tenants })
    if (counts.requeued + counts.completed + counts.failed > 0)
      d.logger.warn({ ...counts, tenants, ms: Date.now() - started }, 'reconciled job records with the queue')
    return counts
  }

  const timer = setInterval(() => {
    if (stopped || current) return // a sweep longer than the interval: skip a round rather than overlap
    current = runOnce()
      .catch((err) => d.logger.warn({ err }, 'job record reconcile sweep failed; next interval retries'))
      .finally(() => {
        current = undefined
      })
  }, o.intervalMs)
  timer.unref()

  return {
    runOnce,
    async stop() {
      stopped = true
      clearInterval(timer)
      await current
    },
  }
}
