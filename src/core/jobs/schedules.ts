/**
 * Scheduled work: recurring jobs, listed in ONE place per owner (the core's CORE_SCHEDULES, each
 * feature's `schedules` in its manifest) and collected by createServices into `services.schedules`.
 *
 * How a schedule runs. BullMQ job schedulers (`upsertJobScheduler`) keep the timetable in Redis and
 * drop one "tick" job per period into a queue of their own, `schedules`, whose job ids are
 * `repeat:<schedule>:<period ms>`. A tick is not a kit job: the tick worker only submits the schedule's
 * real job through the task manager, with an id derived from the schedule and the period. So:
 *   - every scheduled run is an ordinary job of the registry, with its sys_jobs record, retries,
 *     reconcile sweep and Bull Board entry, like any other submit;
 *   - a tick that runs twice (a retry after a submit failed, two workers, a scheduler re-upserted)
 *     submits the same id again, which is a no-op once the job started: one run per period;
 *   - the job itself is idempotent anyway (a purge or a reconcile run twice changes nothing more).
 *
 * The worker process installs the schedules at start (installSchedules: upsert every listed one, remove
 * every scheduler no longer listed) and runs the tick worker; the API process never does.
 */
import { type ConnectionOptions, type Job, Queue, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { logRedisErrors } from '../lib/redis.js'
import { closeWorkerConnection } from './queues.js'
import { derivedJobId, type JobRegistry, type JobSubmitter, type KnownJobs, type PayloadOf, payloadProblems } from './registry.js'

export const SCHEDULES_QUEUE = 'schedules'

export interface Schedule {
  /** Unique across the program; the BullMQ job scheduler's id. */
  name: string
  /** A cron pattern, evaluated in UTC (BullMQ `pattern`), e.g. '15 3 * * *'. Exactly one of cron and everyMs. */
  cron?: string
  /** Or a fixed period in ms (BullMQ `every`). */
  everyMs?: number
  /** The registry job each run submits, and its payload. */
  job: string
  payload: unknown
  /** One line for the README's "Scheduled work" table: what a run does. */
  description: string
}

/** A schedule whose job name and payload are checked against JobTypes at compile time. */
export function schedule<N extends keyof KnownJobs & string>(
  s: Omit<Schedule, 'job' | 'payload'> & { job: N; payload: PayloadOf<KnownJobs[N]> },
): Schedule {
  return s
}

/** Refuse at boot what would fail at 3 a.m.: duplicate names, no or two timings, an unknown job, a bad payload. */
export function validateSchedules(schedules: readonly Schedule[], registry: JobRegistry): void {
  const seen = new Set<string>()
  for (const s of schedules) {
    if (seen.has(s.name)) throw new Error(`schedule "${s.name}" is listed twice`)
    seen.add(s.name)
    if ((s.cron === undefined) === (s.everyMs === undefined)) throw new Error(`schedule "${s.name}" needs exactly one of cron and everyMs`)
    if (s.everyMs !== undefined && !(Number.isInteger(s.everyMs) && s.everyMs >= 1000))
      throw new Error(`schedule "${s.name}": everyMs must be an integer of at least 1000`)
    const def = Object.hasOwn(registry, s.job) ? registry[s.job] : undefined
    if (!def) throw new Error(`schedule "${s.name}" submits unknown job "${s.job}"`)
    const problems = payloadProblems(def.payload, s.payload)
    if (problems.length > 0) throw new Error(`schedule "${s.name}": invalid payload for "${s.job}": ${problems.join('; ')}`)
  }
}

/** The id of the job a schedule submits for one period (`tick` is the tick's BullMQ id, unique per period). */
export const scheduledRunId = (scheduleName: string, tickId: string) => derivedJobId(`schedule:${scheduleName}`, tickId)

/** The README's "Scheduled work" table rows, in list order (test/jobs/schedules.test.ts keeps the README equal to it). */
export function scheduleTable(schedules: readonly Schedule[]): string {
  const when = (s: Schedule) => (s.cron !== undefined ? `\`${s.cron}\` (UTC)` : `every ${s.everyMs! / 1000} s`)
  return [
    '| Schedule | When | Job | What it does |',
    '| --- | --- | --- | --- |',
    ...schedules.map((s) => `| \`${s.name}\` | ${when(s)} | \`${s.job}\` | ${s.description} |`),
  ].join('\n')
}

interface TickData {
  schedule: string
}

const CLOSE_TIMEOUT_MS = 5000

const TICK_OPTS = {
  // A tick fails only when its submit does (database or Redis down): retry for a good while.
  attempts: 8,
  backoff: { type: 'exponential' as const, delay: 5000 },
  removeOnComplete: { count: 200 },
  removeOnFail: { age: 7 * 86_400 },
}

/** Upsert every listed schedule and remove the schedulers no longer listed. Returns the names removed. */
export async function installSchedules(queue: Queue, schedules: readonly Schedule[]): Promise<string[]> {
  for (const s of schedules) {
    await queue.upsertJobScheduler(s.name, s.cron !== undefined ? { pattern: s.cron, tz: 'UTC' } : { every: s.everyMs! }, {
      name: s.name,
      data: { schedule: s.name } satisfies TickData,
      opts: TICK_OPTS,
    })
  }
  const listed = new Set(schedules.map((s) => s.name))
  const removed: string[] = []
  for (const existing of await queue.getJobSchedulers(0, -1)) {
    const id = existing.id ?? existing.key
    if (listed.has(id)) continue
    await queue.removeJobScheduler(id)
    removed.push(id)
  }
  return removed
}

export interface SchedulerDeps {
  schedules: readonly Schedule[]
  tasks: Pick<JobSubmitter, 'submit'>
  /** Producer connection (shared, not closed here) and the worker's own connection (workerConnection: closed with the scheduler). */
  redis: Redis
  workerConnection: ConnectionOptions
  /** The ticks' queue prefix: queuePrefix(config, SCHEDULES_QUEUE) (hash-tagged on a cluster). */
  prefix: string
  logger: Logger
}

export interface Scheduler {
  queue: Queue
  worker: Worker
  /** What installSchedules removed at start. */
  removed: string[]
  close(): Promise<void>
}

/** What one tick does: submit its schedule's job for this period. Exported for tests. */
export function tickProcessor(d: Pick<SchedulerDeps, 'schedules' | 'tasks' | 'logger'>) {
  const byName = new Map(d.schedules.map((s) => [s.name, s]))
  return async (job: Pick<Job, 'id' | 'data'>) => {
    const s = byName.get((job.data as TickData).schedule)
    // Removed from the code but ticked before installSchedules ran: nothing to run.
    if (!s) return { skipped: 'unknown schedule' }
    const submitted = await d.tasks.submit(s.job, s.payload, { id: scheduledRunId(s.name, job.id!) })
    d.logger.info({ schedule: s.name, job: s.job, jobId: submitted.id }, 'scheduled job submitted')
    return { jobId: submitted.id }
  }
}

/** Install the schedules and start the tick worker (the worker process, once per process consuming the system queue). */
export async function startScheduler(d: SchedulerDeps): Promise<Scheduler> {
  const queue = new Queue(SCHEDULES_QUEUE, { connection: d.redis, prefix: d.prefix })
  logRedisErrors(queue, d.logger, `queue ${SCHEDULES_QUEUE}`)
  const removed = await installSchedules(queue, d.schedules)
  if (removed.length > 0) d.logger.info({ removed }, 'removed job schedulers no longer listed')
  const worker = new Worker(SCHEDULES_QUEUE, tickProcessor(d), { connection: d.workerConnection, prefix: d.prefix, concurrency: 1 })
  logRedisErrors(worker, d.logger, `worker ${SCHEDULES_QUEUE}`)
  worker.on('failed', (job, err) => d.logger.warn({ err, schedule: job?.name, attempt: job?.attemptsMade }, 'scheduled tick failed'))
  await worker.waitUntilReady()
  return {
    queue,
    worker,
    removed,
    async close() {
      // A tick is a quick submit; with Redis gone BullMQ's graceful close could wait forever, so it is bounded.
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), CLOSE_TIMEOUT_MS)
      })
      const closed = await Promise.race([worker.close().then(() => true as const), late])
      clearTimeout(timer)
      if (!closed) await worker.disconnect().catch(() => {})
      closeWorkerConnection(d.workerConnection)
      await queue.close().catch(() => {})
    },
  }
}
