/**
 * Job records (Postgres) and the queue (Redis) brought back in step by the reconcile sweep, and the
 * boot warning about a Redis without persistence. Redis here is a scratch instance of this file's own,
 * killed and restarted empty; the second world uses the shared Redis.
 */
import { Writable } from 'node:stream'
import Fastify, { type FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { uuidv7 } from 'uuidv7'
import app, { serverOptions } from '../../src/app.js'
import { systemJob } from '../../src/core/jobs/registry.js'
import { createTaskManager } from '../../src/core/jobs/task-manager.js'
import { redisPersistence, warnIfRedisNotPersistent } from '../../src/core/lib/redis-persistence.js'
import { type ScratchRedis, startScratchRedis } from '../helpers/scratch-services.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { createJobsWorld, type JobsWorld, settled, silent, until } from './helpers.js'
import { killSpawnedWorkers, spawnWorker } from './worker-child.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  await killSpawnedWorkers()
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A pino logger whose lines land in an array (level, msg and fields). */
function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l))
      cb()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

const NO_PERSISTENCE = 'Redis has no persistence'

describe('reconcile sweep', () => {
  let redis: ScratchRedis
  let smtp: SmtpCapture
  let world: JobsWorld
  afterAll(async () => {
    await world?.close()
    await smtp?.close()
    await redis?.destroy()
  })

  it('Redis restarted empty: the worker re-queues the pending jobs it lost (system and tenant), each runs once', async () => {
    redis = await startScratchRedis()
    smtp = await startSmtpCapture()
    world = await createJobsWorld({
      REDIS_URL: redis.url,
      SMTP_HOST: smtp.host,
      SMTP_PORT: String(smtp.port),
      SMTP_STARTTLS: 'false',
      JOB_RECONCILE_AFTER_MS: '0',
    })
    const { tasks } = world.services
    const tenant = await world.tenant('lost')
    const mail = await tasks.submit('email.send', { to: 'lost@example.test', template: 'welcome', variables: { user_name: 'A', tenant_name: 'B', dashboard_url: 'https://x.test/' } })
    const recount = await tasks.submit('projects.recount', { tenantId: tenant.id })
    expect(await tasks.queues.system.getJobState(mail.id)).toBe('waiting')

    await redis.kill()
    await redis.start()
    await until(async () => (await world.services.redis.ping().catch(() => 'down')) === 'PONG', 10_000, 'Redis back')
    // Gone from the queue; the records still say pending.
    expect(await tasks.getJob(mail.id, 'system')).toMatchObject({ status: 'pending', queueState: 'unknown' })
    expect(await tasks.getJob(recount.id, { tenantId: tenant.id })).toMatchObject({ status: 'pending', queueState: 'unknown' })

    // Every 10th sweep also visits the tenant databases: 20 ms × 10.
    const workers = tasks.startWorkers({ reconcileIntervalMs: 20 })
    cleanups.push(() => workers.close().then(() => {}))
    await workers.ready()
    expect(await settled(tasks, mail.id, 'system')).toMatchObject({ status: 'completed', retryCount: 0 })
    expect(await settled(tasks, recount.id, { tenantId: tenant.id })).toMatchObject({ status: 'completed', result: { total: 0 } })
    expect(smtp.messages.map((m) => m.envelope.to[0])).toEqual(['lost@example.test'])
    const bull = await tasks.queues.system.getJob(mail.id)
    expect(bull!.attemptsMade).toBe(1)

    // Nothing left to do: the next sweep finds the records finished.
    expect(await tasks.reconcile({ olderThanMs: 0, tenants: true })).toEqual({ checked: 0, requeued: 0, completed: 0, failed: 0, unknownType: 0 })
    expect(smtp.messages).toHaveLength(1)
  }, 60_000)
})

describe('reconcile from BullMQ state (records whose write was lost)', () => {
  let world: JobsWorld
  afterAll(async () => {
    await world?.close()
  })

  it('finishes records BullMQ finished, re-queues only old pending records it lost, leaves unknown job types alone', async () => {
    world = await createJobsWorld({ JOB_RECONCILE_INTERVAL_MS: '0' })
    let runs = 0
    const registry = {
      'test.ok': systemJob({
        payload: Type.Object({ n: Type.Integer() }),
        process: async (_ctx, p) => {
          runs++
          return { n: p.n }
        },
      }),
      'test.fail': systemJob({
        payload: Type.Object({}),
        maxRetries: 0,
        process: async (): Promise<null> => {
          throw new Error('boom')
        },
      }),
    }
    const tasks = createTaskManager({ registry, deps: {}, ...world.services, config: world.env.config, logger: silent })
    cleanups.push(() => tasks.close())
    const workers = tasks.startWorkers({ scopes: ['system'] })
    await workers.ready()
    const ok = await tasks.submit('test.ok', { n: 7 })
    const bad = await tasks.submit('test.fail', {})
    await settled(tasks, ok.id, 'system')
    await settled(tasks, bad.id, 'system')
    expect(runs).toBe(1)

    const sql = world.services.host.sql
    // The record writes after the work "were lost": both records still say running, an hour ago.
    await sql`update sys_jobs set status = 'running', result = null, error_log = null, updated_at = now() - interval '1 hour' where id in ${sql([ok.id, bad.id])}`
    // A record whose submit died before Redis (pending, no job), one just written, one of a type nobody here knows.
    const lost = uuidv7()
    const fresh = uuidv7()
    const foreign = uuidv7()
    await sql`insert into sys_jobs (id, job_type, payload, updated_at) values
      (${lost}, 'test.ok', ${'{"n":1}'}::text::jsonb, now() - interval '1 hour'),
      (${fresh}, 'test.ok', ${'{"n":2}'}::text::jsonb, now()),
      (${foreign}, 'other.job', '{}'::jsonb, now() - interval '1 hour')`

    expect(await tasks.reconcile({ olderThanMs: 60_000 })).toEqual({ checked: 4, requeued: 1, completed: 1, failed: 1, unknownType: 1 })
    expect(await tasks.getJob(ok.id, 'system')).toMatchObject({ status: 'completed', result: { n: 7 }, retryCount: 0 })
    const failed = await tasks.getJob(bad.id, 'system')
    expect(failed).toMatchObject({ status: 'failed', retryCount: 0 })
    expect(failed.errorLog).toContain('boom')
    // The lost one runs (once); the fresh one is not touched (its submit may still be on its way to Redis).
    expect(await settled(tasks, lost, 'system')).toMatchObject({ status: 'completed', result: { n: 1 } })
    expect(runs).toBe(2)
    expect(await tasks.getJob(fresh, 'system')).toMatchObject({ status: 'pending', queueState: 'unknown' })
    expect(await tasks.getJob(foreign, 'system')).toMatchObject({ status: 'pending', queueState: 'unknown' })

    // Re-adding is safe: a second sweep queues nothing twice and runs nothing again.
    expect(await tasks.reconcile({ olderThanMs: 60_000 })).toMatchObject({ requeued: 0, completed: 0, failed: 0, unknownType: 1 })
    expect(runs).toBe(2)
  })
})

describe('Redis persistence at boot', () => {
  it('no AOF, no RDB: warned; AOF on: quiet; CONFIG disabled: said it could not check, boot goes on', async () => {
    const bare = await startScratchRedis()
    const aof = await startScratchRedis({ appendonly: true })
    const locked = await startScratchRedis({ extraArgs: ['--rename-command', 'CONFIG', '""'] })
    cleanups.push(() => bare.destroy(), () => aof.destroy(), () => locked.destroy())
    const check = async (url: string) => {
      const client = new Redis(url)
      const { logger, lines } = captureLogger()
      try {
        return { result: await warnIfRedisNotPersistent(client, logger), lines }
      } finally {
        client.disconnect()
      }
    }
    const a = await check(bare.url)
    expect(a.result).toEqual({ checked: true, persistent: false, appendonly: false, save: '' })
    expect(a.lines).toEqual([expect.objectContaining({ level: 40, msg: expect.stringContaining(NO_PERSISTENCE) })])
    const b = await check(aof.url)
    expect(b.result).toMatchObject({ checked: true, persistent: true, appendonly: true })
    expect(b.lines).toEqual([])
    const c = await check(locked.url)
    expect(c.result).toMatchObject({ checked: false, reason: expect.stringMatching(/unknown command/i) })
    expect(c.lines).toEqual([expect.objectContaining({ level: 30, msg: expect.stringContaining('could not read Redis persistence') })])
    const rdb = new Redis(aof.url)
    try {
      await rdb.config('SET', 'appendonly', 'no')
      await rdb.config('SET', 'save', '3600 1')
      expect(await redisPersistence(rdb)).toMatchObject({ persistent: true, appendonly: false, save: '3600 1' })
    } finally {
      rdb.disconnect()
    }
  })

  it('the API and the worker say so when they boot against a Redis without persistence', async () => {
    const bare = await startScratchRedis()
    cleanups.push(() => bare.destroy())
    const world = await createJobsWorld({ REDIS_URL: bare.url })
    cleanups.push(() => world.close())

    const { logger, lines } = captureLogger()
    const api = Fastify({ ...serverOptions(world.env.config), loggerInstance: logger as unknown as FastifyBaseLogger })
    cleanups.push(() => api.close())
    await api.register(fp(app), { config: world.env.config })
    await api.ready()
    expect(lines.filter((l) => l.msg.includes(NO_PERSISTENCE))).toHaveLength(1)

    const worker = spawnWorker(['--queues', 'system'], world.env.vars)
    // A cold tsx start on a loaded machine can take a while.
    await worker.waitForLog(NO_PERSISTENCE, 150_000)
    await worker.waitForLog('worker started')
  }, 240_000)
})
