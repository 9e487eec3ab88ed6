/**
 * The transactional outbox (src/core/jobs/outbox.ts), on its own: real host database, real Redis and BullMQ,
 * a worker running a test job that counts its runs.
 *   write: commits and rolls back with the caller's transaction, one row per key, a bad intent fails it
 *   dispatch: submits at once and marks the rows dispatched (no sweep running)
 *   races: two outboxes (two processes) sweeping and dispatching the same rows: every job runs once
 *   lock: a sweep held elsewhere is skipped
 *   refused rows: rejected, never retried, and they don't hold back the rest
 *   queue refusing the enqueue: rows stay owed, the job record says so, and the next sweep submits them
 */
import { Redis } from 'ioredis'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createOutbox, type Outbox, outboxJobId } from '../../src/core/jobs/outbox.js'
import { ENQUEUE_FAILED } from '../../src/core/jobs/records.js'
import { type JobRegistry, systemJob } from '../../src/core/jobs/registry.js'
import type { TaskManager } from '../../src/core/jobs/task-manager.js'
import { createServices, type Services } from '../../src/services.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type ScratchRedis, startScratchRedis } from '../helpers/scratch-services.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { silent } from './helpers.js'

const runs = new Map<string, number>()
const TEST_JOBS = {
  'test.outbox_effect': systemJob({
    payload: Type.Object({ n: Type.Integer() }, { additionalProperties: false }),
    maxRetries: 0,
    async process(ctx) {
      runs.set(ctx.jobId, (runs.get(ctx.jobId) ?? 0) + 1)
      return { ran: true }
    },
  }),
}

let redis: ScratchRedis
let env: TestEnv
let services: Services
let worker: WorkerRuntime

beforeAll(async () => {
  // A Redis of this file's own: one test makes it refuse writes (out of memory), which the shared one must never do.
  redis = await startScratchRedis()
  env = await createTestEnv({ REDIS_URL: redis.url })
  services = createServices(env.config, silent, { jobs: TEST_JOBS })
  await services.catalog.ready
  worker = await startWorkers(services, { scopes: ['system'], concurrency: 8 })
}, 30_000)

afterAll(async () => {
  await worker?.close(5000)
  await services?.close()
  await env?.cleanup()
  await redis?.destroy()
})

let seq = 0
const key = () => `k-${Date.now().toString(36)}-${seq++}`
const intents = (n: number) => Array.from({ length: n }, (_, i) => ({ job: 'test.outbox_effect', payload: { n: i }, key: key() }))

async function rows(keys: string[]) {
  return services.host.sql<{ dedupe_key: string; dispatched: boolean; rejected: boolean; attempts: number; last_error: string | null }[]>`
    select dedupe_key, dispatched_at is not null as dispatched, rejected_at is not null as rejected, attempts, last_error
    from core_outbox where dedupe_key in ${services.host.sql(keys)} order by dedupe_key`
}
const keysOf = (list: { key: string }[]) => list.map((i) => i.key)
const jobIdsOf = (list: { job: string; key: string }[]) => list.map((i) => outboxJobId(i.job, i.key))
const runCounts = (ids: string[]) => ids.map((id) => runs.get(id) ?? 0)

describe('outbox write', () => {
  it('commits and rolls back with the caller, writes one row per key, and fails the transaction on a bad intent', async () => {
    const [a, b] = intents(2)
    await expect(
      services.host.sql.begin(async (tx) => {
        await services.outbox.write(tx, [a!])
        throw new Error('the change failed')
      }),
    ).rejects.toThrow('the change failed')
    expect(await rows([a!.key])).toEqual([])

    const written = await services.host.sql.begin((tx) => services.outbox.write(tx, [a!, b!, { ...a!, payload: { n: 99 } }]))
    expect(written.map((r) => r.jobId)).toEqual(jobIdsOf([a!, b!]))
    // The same key later (a redelivery, a retry of the change) writes nothing.
    expect(await services.host.sql.begin((tx) => services.outbox.write(tx, [a!]))).toEqual([])
    expect(await rows([a!.key, b!.key])).toHaveLength(2)

    const bad = { job: 'test.outbox_effect', payload: { n: 'one' }, key: key() }
    await expect(services.host.sql.begin((tx) => services.outbox.write(tx, [bad]))).rejects.toThrow(/invalid payload.*\/n/)
    const unknown = { job: 'test.no_such_job', payload: {}, key: key() }
    await expect(services.host.sql.begin((tx) => services.outbox.write(tx, [unknown]))).rejects.toThrow(/unknown job "test.no_such_job"/)
    expect(await rows([bad.key, unknown.key])).toEqual([])

    await services.outbox.sweep()
  })
})

describe('outbox relay', () => {
  it('dispatch submits at once and marks the rows dispatched; each job runs once', async () => {
    const list = intents(5)
    const written = await services.host.sql.begin((tx) => services.outbox.write(tx, list))
    await services.outbox.dispatch(written)
    expect((await rows(keysOf(list))).map((r) => [r.dispatched, r.attempts])).toEqual(list.map(() => [true, 1]))
    await expect.poll(() => runCounts(jobIdsOf(list)), { timeout: 15_000 }).toEqual(list.map(() => 1))
  })

  it('two processes sweeping and dispatching the same rows at once: every job runs exactly once', async () => {
    // A second process's outbox: its own Redis connection, the same host database and queue.
    const redis2 = new Redis(env.config.redisUrl)
    const other: Outbox = createOutbox({
      host: services.host,
      tasks: services.tasks,
      redis: redis2,
      redisPrefix: env.config.redisPrefix,
      logger: silent,
      batchSize: 7,
    })
    try {
      const list = intents(40)
      const written = await services.host.sql.begin((tx) => services.outbox.write(tx, list))
      const [s1, s2] = await Promise.all([
        services.outbox.sweep(),
        other.sweep(),
        services.outbox.dispatch(written),
        other.dispatch(written.slice(10)),
      ])
      expect(s1!.swept || s2!.swept).toBe(true)
      expect((await rows(keysOf(list))).every((r) => r.dispatched)).toBe(true)
      await expect.poll(() => runCounts(jobIdsOf(list)), { timeout: 20_000 }).toEqual(list.map(() => 1))
      // Submitting every row again (a lost dispatched_at) is a no-op: the records and BullMQ ids are there.
      await services.host.sql`update core_outbox set dispatched_at = null where dedupe_key in ${services.host.sql(keysOf(list))}`
      await Promise.all([services.outbox.sweep(), other.sweep()])
      await services.outbox.sweep()
      expect((await rows(keysOf(list))).every((r) => r.dispatched)).toBe(true)
      const [records] = await services.host.sql<{ n: number; completed: number }[]>`
        select count(*)::int as n, count(*) filter (where status = 'completed')::int as completed
        from sys_jobs where id in ${services.host.sql(jobIdsOf(list))}`
      expect(records).toEqual({ n: 40, completed: 40 })
      expect(runCounts(jobIdsOf(list))).toEqual(list.map(() => 1))
    } finally {
      await other.close()
      redis2.disconnect()
    }
  })

  it('a sweep whose lock another process holds does nothing; once released, it sweeps', async () => {
    const list = intents(2)
    await services.host.sql.begin((tx) => services.outbox.write(tx, list))
    const lockKey = `${env.config.redisPrefix}:outbox:sweep`
    await services.redis.set(lockKey, 'another-process', 'PX', 10_000)
    expect(await services.outbox.sweep()).toEqual({ swept: false, dispatched: 0, rejected: 0, failed: 0 })
    expect((await rows(keysOf(list))).map((r) => r.dispatched)).toEqual([false, false])
    expect(await services.redis.get(lockKey)).toBe('another-process')
    await services.redis.del(lockKey)
    expect(await services.outbox.sweep()).toMatchObject({ swept: true, dispatched: 2 })
    expect(await services.redis.exists(lockKey)).toBe(0)
    await expect.poll(() => runCounts(jobIdsOf(list)), { timeout: 15_000 }).toEqual([1, 1])
  })

  it('rows the task manager refuses are rejected and never retried, without holding back the others', async () => {
    const list = intents(3)
    await services.host.sql.begin((tx) => services.outbox.write(tx, list))
    // Written valid, then no longer acceptable (a deploy changed the job's schema, or removed the job).
    await services.host.sql`update core_outbox set payload = '{"n":"x"}' where dedupe_key = ${list[0]!.key}`
    await services.host.sql`update core_outbox set job_name = 'test.removed_job' where dedupe_key = ${list[1]!.key}`
    const swept = await services.outbox.sweep()
    expect(swept).toMatchObject({ swept: true, dispatched: 1, rejected: 2, failed: 0 })
    const after = await rows(keysOf(list))
    expect(after.map((r) => [r.dispatched, r.rejected, r.attempts])).toEqual([
      [false, true, 1],
      [false, true, 1],
      [true, false, 1],
    ])
    expect(after[0]!.last_error).toMatch(/INVALID_JOB_PAYLOAD|\/n/)
    expect(after[1]!.last_error).toMatch(/Unknown job type "test.removed_job"/)
    expect(await services.outbox.sweep()).toMatchObject({ dispatched: 0, rejected: 0 })
    await expect.poll(() => runs.get(outboxJobId('test.outbox_effect', list[2]!.key)), { timeout: 15_000 }).toBe(1)
  })

  it('a queue that refuses the enqueue: rows stay owed, the job record says so, and the next sweep submits them once', async () => {
    const list = intents(3)
    const written = await services.host.sql.begin((tx) => services.outbox.write(tx, list))
    // A real Redis refusal while the connection is up: out of memory (maxmemory 1 byte, noeviction), so
    // BullMQ's add script is refused before it writes anything. The sweep's lock is taken first, by hand
    // (the lock write would be refused too); the worker is paused so it does not trip over the same error.
    await Promise.all(worker.workers.workers.map((w) => w.pause()))
    const lockKey = `${env.config.redisPrefix}:outbox:sweep`
    await services.redis.config('SET', 'maxmemory', '1')
    try {
      await services.outbox.dispatch(written)
      expect(await services.outbox.sweep()).toMatchObject({ swept: false })
    } finally {
      await services.redis.config('SET', 'maxmemory', '0')
      for (const w of worker.workers.workers) w.resume()
    }
    const owed = await rows(keysOf(list))
    expect(owed.map((r) => [r.dispatched, r.attempts])).toEqual(list.map(() => [false, 1]))
    expect(owed[0]!.last_error).toMatch(/OOM/)
    expect(await services.redis.exists(lockKey)).toBe(0)
    const records = await services.host.sql<{ status: string; error_log: string }[]>`
      select status, error_log from sys_jobs where id in ${services.host.sql(jobIdsOf(list))}`
    expect(records.map((r) => r.status)).toEqual(['failed', 'failed', 'failed'])
    expect(records.every((r) => r.error_log.startsWith(ENQUEUE_FAILED))).toBe(true)

    // Redis is fine again: the sweep submits the same ids; the records failed at enqueue go back to pending and run.
    expect(await services.outbox.sweep()).toMatchObject({ swept: true, dispatched: 3, failed: 0 })
    await expect.poll(() => runCounts(jobIdsOf(list)), { timeout: 15_000 }).toEqual([1, 1, 1])
    await expect
      .poll(
        async () =>
          (await services.host.sql<{ status: string }[]>`select status from sys_jobs where id in ${services.host.sql(jobIdsOf(list))}`).map(
            (r) => r.status,
          ),
        { timeout: 15_000 },
      )
      .toEqual(['completed', 'completed', 'completed'])
  })

  it('a job that ran is not enqueued again when its id is submitted again (by hand or by the sweep)', async () => {
    const [one] = intents(1)
    const written = await services.host.sql.begin((tx) => services.outbox.write(tx, [one!]))
    await services.outbox.dispatch(written)
    const id = outboxJobId(one!.job, one!.key)
    await expect.poll(() => runs.get(id), { timeout: 15_000 }).toBe(1)
    await expect
      .poll(async () => (await services.host.sql<{ status: string }[]>`select status from sys_jobs where id = ${id}`)[0]?.status, {
        timeout: 15_000,
      })
      .toBe('completed')
    await (services.tasks as TaskManager<JobRegistry>).submit('test.outbox_effect', one!.payload, { id })
    await services.host.sql`update core_outbox set dispatched_at = null where dedupe_key = ${one!.key}`
    expect(await services.outbox.sweep()).toMatchObject({ dispatched: 1 })
    // Not back in the queue: the record is still completed, and so is BullMQ's job.
    expect(await services.tasks.getJob(id, 'system')).toMatchObject({ status: 'completed', queueState: 'completed' })
    expect(runs.get(id)).toBe(1)
  })
})
