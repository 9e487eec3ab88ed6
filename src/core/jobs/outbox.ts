/**
 * The transactional outbox: follow-up jobs that must not be lost when the queue (Redis) is down.
 *
 *   write(tx, intents)   inside the caller's transaction: one core_outbox row per intent, validated like a
 *                        submit; it commits or rolls back with the change that asks for the work
 *   dispatch(rows)       after commit, in the background (never awaited by a request): submit the rows
 *                        through the task manager and set dispatched_at; a failure is logged and the row
 *                        stays owed
 *   sweep()              submit every row still owed, oldest first: run periodically by startSweeper() in
 *                        the API and worker processes; one process at a time (a Redis lock)
 *
 * Exactly once: a row's job id is derived from (job name, dedupe key), so submitting it again (dispatch and
 * sweep racing, a crash between submit and dispatched_at, two sweepers) finds the same job record and the
 * same BullMQ job id, which is a no-op. The lock only saves duplicate work; it is not what makes it safe.
 *
 * Why a Redis lock and not a Postgres advisory lock: a sweep can only do anything while Redis answers, so
 * the lock lives where the work goes; it holds no host connection while the sweep talks to the queue, and
 * it expires by itself if its holder dies.
 */
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type postgres from 'postgres'
import type { Logger } from 'pino'
import type { Sql } from '../db/connect.js'
import { AppError } from '../lib/errors.js'
import { errorLog } from './processor.js'
import { derivedJobId, type JobRegistry, type JobSubmitter, payloadProblems } from './registry.js'

export interface OutboxIntent {
  /** A job name of the task manager's registry. */
  job: string
  payload: unknown
  /**
   * What makes two intents the same work (e.g. the Stripe event id it follows from): the second is not
   * written. Without one, every intent is new work.
   */
  key?: string
}

/** A row as the relay needs it. */
export interface OutboxRow {
  id: string
  jobName: string
  jobId: string
  payload: unknown
}

export interface SweepResult {
  /** Whether this call held the lock (false: Redis down, or another process is sweeping). */
  swept: boolean
  dispatched: number
  rejected: number
  /** Rows tried whose submit failed for a reason that may pass (queue down): left for the next sweep. */
  failed: number
}

export interface Outbox {
  /** Write intents in the caller's transaction; returns the rows written (an intent already in the outbox is skipped). */
  write(tx: postgres.TransactionSql | Sql, intents: OutboxIntent[]): Promise<OutboxRow[]>
  /** After commit: submit these rows now, in the background. The promise never rejects (callers need not await it). */
  dispatch(rows: OutboxRow[]): Promise<void>
  sweep(): Promise<SweepResult>
  /** Sweep every `intervalMs` until close(). */
  startSweeper(intervalMs: number): void
  /** Stop sweeping; wait for dispatches and a sweep in flight. */
  close(): Promise<void>
}

export interface OutboxDeps {
  host: { sql: Sql }
  /** The task manager (its registry validates intents; submitMany enqueues them). */
  tasks: JobSubmitter & { readonly registry: JobRegistry }
  /** The producer connection the task manager enqueues on: its state says whether trying now is worth it. */
  redis: Redis
  redisPrefix: string
  logger: Logger
  /** Rows per submit (default 200). */
  batchSize?: number
  /** Lock lifetime, renewed per batch (default 60 s). */
  lockTtlMs?: number
}

/** The job id an intent is submitted under: the same for the same (job, key) in every process. */
export const outboxJobId = (job: string, key: string) => derivedJobId(job, key)

/** Dispatched rows are kept this long (for inspection), then pruned by the sweep. */
const RETENTION_DAYS = 7
const PRUNE_EVERY_MS = 3_600_000
/** One log line per this interval while the queue is down, not one per event. */
const WARN_EVERY_MS = 10_000

// Compare-and-delete: release the lock only if it is still ours (it may have expired and been taken).
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`

/** Errors a later try cannot fix: the task manager refused the intent itself (4xx), not the queue. */
const isRejection = (err: unknown) => err instanceof AppError && err.statusCode < 500

export function createOutbox(d: OutboxDeps): Outbox {
  const { host, tasks, redis, logger } = d
  const batchSize = d.batchSize ?? 200
  const lockTtlMs = d.lockTtlMs ?? 60_000
  const lockKey = `${d.redisPrefix}:outbox:sweep`
  const inFlight = new Set<Promise<unknown>>()
  let timer: NodeJS.Timeout | undefined
  let sweeping: Promise<SweepResult> | undefined
  let lastPrune = 0
  let lastWarn = 0
  let closed = false

  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p)).catch(() => {})
    return p
  }

  const warnOwed = (count: number, err?: unknown) => {
    const now = Date.now()
    if (now - lastWarn < WARN_EVERY_MS) return
    lastWarn = now
    logger.warn({ err, count }, 'outbox: the queue is unavailable; the jobs stay owed and the sweep will submit them')
  }

  async function write(tx: postgres.TransactionSql | Sql, intents: OutboxIntent[]): Promise<OutboxRow[]> {
    if (intents.length === 0) return []
    const rows = intents.map((intent) => {
      const def = tasks.registry[intent.job]
      if (!def) throw new Error(`outbox: unknown job "${intent.job}"`)
      // A bad payload is a bug in the writer: fail its transaction now (a 500, not the caller's 400) rather than reject the row later.
      const problems = payloadProblems(def.payload, intent.payload)
      if (problems.length > 0) throw new Error(`outbox: invalid payload for job "${intent.job}": ${problems.slice(0, 5).join('; ')}`)
      const id = randomUUID()
      const key = intent.key ?? id
      return { id, job_name: intent.job, dedupe_key: key, job_id: outboxJobId(intent.job, key), payload: intent.payload }
    })
    const written = await tx<{ id: string }[]>`
      insert into core_outbox (id, job_name, dedupe_key, job_id, payload)
      select id, job_name, dedupe_key, job_id, payload
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(id uuid, job_name text, dedupe_key text, job_id uuid, payload jsonb)
      on conflict (job_id) do nothing
      returning id`
    const ids = new Set(written.map((r) => r.id))
    return rows.filter((r) => ids.has(r.id)).map((r) => ({ id: r.id, jobName: r.job_name, jobId: r.job_id, payload: r.payload }))
  }

  /** Submit rows (grouped by job) and record the outcome of each; throws nothing. */
  async function submitRows(rows: OutboxRow[]): Promise<Omit<SweepResult, 'swept'>> {
    const out = { dispatched: 0, rejected: 0, failed: 0 }
    const byJob = new Map<string, OutboxRow[]>()
    for (const r of rows) byJob.set(r.jobName, [...(byJob.get(r.jobName) ?? []), r])
    for (const [job, group] of byJob) {
      try {
        await tasks.submitMany(
          job,
          group.map((r) => r.payload),
          { ids: group.map((r) => r.jobId) },
        )
        await markDispatched(group)
        out.dispatched += group.length
      } catch (err) {
        if (!isRejection(err)) {
          await markFailed(group, err)
          out.failed += group.length
          continue
        }
        // One bad row must not hold back its batch: find it by submitting one at a time.
        for (const row of group) {
          try {
            await tasks.submitMany(job, [row.payload], { ids: [row.jobId] })
            await markDispatched([row])
            out.dispatched++
          } catch (rowErr) {
            if (isRejection(rowErr)) {
              logger.error({ err: rowErr, outboxId: row.id, job }, 'outbox: the task manager refused this job; it will not be retried')
              await markFailed([row], rowErr, true)
              out.rejected++
            } else {
              await markFailed([row], rowErr)
              out.failed++
            }
          }
        }
      }
    }
    return out
  }

  const idArray = (rows: OutboxRow[]) => `{${rows.map((r) => r.id).join(',')}}`

  async function markDispatched(rows: OutboxRow[]) {
    // If this write fails the rows stay owed: the next sweep submits them again, a no-op by job id.
    await host.sql`
      update core_outbox set dispatched_at = now(), attempts = attempts + 1, last_error = null
      where id = any(${idArray(rows)}::uuid[]) and dispatched_at is null`.catch((err) =>
      logger.warn({ err, count: rows.length }, 'outbox: marking rows dispatched failed (they will be submitted again, harmlessly)'),
    )
  }

  async function markFailed(rows: OutboxRow[], err: unknown, rejected = false) {
    await host.sql`
      update core_outbox set attempts = attempts + 1, last_error = ${errorLog(err).slice(0, 4000)},
        rejected_at = ${rejected ? host.sql`now()` : host.sql`rejected_at`}
      where id = any(${idArray(rows)}::uuid[]) and dispatched_at is null`.catch((writeErr) =>
      logger.warn({ err: writeErr, count: rows.length }, 'outbox: recording a failed submit failed'),
    )
  }

  function dispatch(rows: OutboxRow[]): Promise<void> {
    if (rows.length === 0 || closed) return Promise.resolve()
    // Redis down (reconnecting): a submit would wait on it for seconds and then fail; leave the rows to the sweep.
    if (redis.status !== 'ready') {
      warnOwed(rows.length)
      return Promise.resolve()
    }
    return track(
      submitRows(rows).then(
        (r) => {
          if (r.failed > 0) warnOwed(r.failed)
        },
        (err) => logger.error({ err }, 'outbox: dispatch failed'),
      ),
    )
  }

  async function prune() {
    if (Date.now() - lastPrune < PRUNE_EVERY_MS) return
    lastPrune = Date.now()
    await host.sql`delete from core_outbox where dispatched_at < now() - make_interval(days => ${RETENTION_DAYS})`
  }

  async function sweepOnce(): Promise<SweepResult> {
    const result: SweepResult = { swept: false, dispatched: 0, rejected: 0, failed: 0 }
    if (redis.status !== 'ready') return result
    const token = randomUUID()
    let locked: string | null
    try {
      locked = await redis.set(lockKey, token, 'PX', lockTtlMs, 'NX')
    } catch (err) {
      // Redis refuses writes (out of memory, read-only replica…): the queue would refuse the jobs too.
      warnOwed(0, err)
      return result
    }
    if (locked !== 'OK') return result
    result.swept = true
    try {
      for (;;) {
        const rows = await host.sql<{ id: string; job_name: string; job_id: string; payload: unknown }[]>`
          select id, job_name, job_id, payload from core_outbox
          where dispatched_at is null and rejected_at is null
          order by created_at, id limit ${batchSize}`
        if (rows.length === 0) break
        const r = await submitRows(rows.map((x) => ({ id: x.id, jobName: x.job_name, jobId: x.job_id, payload: x.payload })))
        result.dispatched += r.dispatched
        result.rejected += r.rejected
        result.failed += r.failed
        // The queue refused something: stop here and try again next time rather than spin on it.
        if (r.failed > 0 || rows.length < batchSize) break
        await redis.pexpire(lockKey, lockTtlMs)
      }
      await prune()
    } finally {
      await redis.eval(RELEASE, 1, lockKey, token).catch(() => {})
    }
    if (result.dispatched > 0 || result.rejected > 0) logger.info(result, 'outbox: swept')
    if (result.failed > 0) warnOwed(result.failed)
    return result
  }

  function sweep(): Promise<SweepResult> {
    // One sweep at a time in this process; callers arriving meanwhile share it.
    sweeping ??= track(sweepOnce()).finally(() => {
      sweeping = undefined
    })
    return sweeping
  }

  return {
    write,
    dispatch,
    sweep,
    startSweeper(intervalMs) {
      if (timer || closed || intervalMs <= 0) return
      timer = setInterval(() => {
        sweep().catch((err) => logger.warn({ err }, 'outbox: sweep failed'))
      }, intervalMs)
      timer.unref()
    },
    async close() {
      closed = true
      if (timer) clearInterval(timer)
      timer = undefined
      while (inFlight.size > 0) await Promise.allSettled([...inFlight])
    },
  }
}
