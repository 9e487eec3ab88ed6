/**
 * Scheduled work (src/core/jobs/schedules.ts): the one list is valid and is what the README shows; the
 * worker installs it as BullMQ job schedulers (removing schedulers no longer listed); each tick submits
 * the schedule's job as an ordinary recorded job, with an id per period, so a tick run twice is one job.
 * The scheduled jobs' own effects are tested in test/jobs/housekeeping.test.ts and test/billing/reconcile.test.ts.
 */
import { readFileSync } from 'node:fs'
import { Queue } from 'bullmq'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectSchedules } from '../../src/core/core-services.js'
import { HOUSEKEEPING_JOBS } from '../../src/core/housekeeping/index.js'
import { queuePrefix } from '../../src/core/jobs/queues.js'
import {
  installSchedules,
  SCHEDULES_QUEUE,
  type Schedule,
  scheduledRunId,
  scheduleTable,
  tickProcessor,
  validateSchedules,
} from '../../src/core/jobs/schedules.js'
import { FEATURES } from '../../src/features/index.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { waitFor } from '../helpers/wait-for.js'
import { createJobsWorld, type JobsWorld, settled, silent } from './helpers.js'

const KIT_SCHEDULES = collectSchedules(FEATURES)

describe('the list of scheduled work', () => {
  it('is valid against the kit registry and names the jobs the issue asks for', async () => {
    const world = await createJobsWorld()
    try {
      expect(world.services.schedules).toEqual(KIT_SCHEDULES)
      expect(() => validateSchedules(KIT_SCHEDULES, world.services.jobs)).not.toThrow()
      expect(KIT_SCHEDULES.map((s) => s.job).sort()).toEqual([
        'billing.reconcile_subscriptions',
        'billing.trim_webhook_ledger',
        'identity.purge_expired',
        'inbound-webhooks.trim_ledger',
        'jobs.trim_records',
        'tenants.purge_deleted',
        'tenants.purge_exports',
      ])
    } finally {
      await world.close()
    }
  })

  it('is the README\'s "Scheduled work" table', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const table = /<!-- schedules:start[^>]*-->\n([\s\S]*?)\n<!-- schedules:end -->/.exec(readme)?.[1]
    expect(table, 'README.md has the schedules markers').toBeDefined()
    expect(table).toBe(scheduleTable(KIT_SCHEDULES))
  })

  it('refuses at boot what would fail at run time', () => {
    const ok: Schedule = { name: 'a', cron: '0 3 * * *', job: 'jobs.trim_records', payload: {}, description: 'x' }
    const registry = { 'jobs.trim_records': HOUSEKEEPING_JOBS['jobs.trim_records'] }
    expect(() => validateSchedules([ok], registry)).not.toThrow()
    expect(() => validateSchedules([ok, ok], registry)).toThrow(/listed twice/)
    expect(() => validateSchedules([{ ...ok, everyMs: 60_000 }], registry)).toThrow(/exactly one of cron and everyMs/)
    expect(() => validateSchedules([{ ...ok, cron: undefined }], registry)).toThrow(/exactly one of cron and everyMs/)
    expect(() => validateSchedules([{ ...ok, job: 'nope' }], registry)).toThrow(/unknown job "nope"/)
    expect(() => validateSchedules([{ ...ok, payload: { extra: 1 } }], registry)).toThrow(/invalid payload.*\/extra is not allowed/)
  })
})

describe('installed by the worker, ticking into recorded jobs', () => {
  let world: JobsWorld
  let runtime: WorkerRuntime | undefined
  const every: Schedule = { name: 'test.every_second', everyMs: 1000, job: 'jobs.trim_records', payload: {}, description: 'test' }

  beforeAll(async () => {
    world = await createJobsWorld()
  })
  afterAll(async () => {
    await runtime?.close(5000)
    await world?.close()
  })

  it('upserts the listed schedules, removes the others, and each tick runs the job once with a per-period id', async () => {
    const { services } = world
    // A scheduler left by an older release, no longer in the list.
    const queue = new Queue(SCHEDULES_QUEUE, { connection: services.redis, prefix: queuePrefix(services.config, SCHEDULES_QUEUE) })
    await queue.upsertJobScheduler('old.removed', { pattern: '0 5 * * *' }, { name: 'old.removed', data: { schedule: 'old.removed' } })

    runtime = await startWorkers({ ...services, schedules: [...KIT_SCHEDULES, every] }, { scopes: ['system'], concurrency: 2 })
    expect(runtime.scheduler?.removed).toEqual(['old.removed'])
    const installed = await queue.getJobSchedulers(0, -1)
    expect(installed.map((s) => s.key).sort()).toEqual([...KIT_SCHEDULES.map((s) => s.name), every.name].sort())
    expect(installed.find((s) => s.key === 'tenants.purge_deleted')).toMatchObject({ pattern: '30 3 * * *', tz: 'UTC' })

    // Two periods of the every-second schedule: two completed jobs.trim_records records, each under the
    // id derived from its tick (repeat:<schedule>:<period ms>).
    const ticks = await waitFor(
      async () => {
        const done = (await queue.getJobs(['completed'])).filter((j) => j.name === every.name)
        return done.length >= 2 ? done : undefined
      },
      { message: 'two completed ticks' },
    )
    for (const tick of ticks.slice(0, 2)) {
      const view = await settled(services.tasks, scheduledRunId(every.name, tick.id!), 'system')
      expect(view, view.errorLog ?? '').toMatchObject({ jobType: 'jobs.trim_records', status: 'completed' })
      expect(tick.returnvalue).toEqual({ jobId: view.id })
    }
    await queue.close()
  })

  it('a tick run again (a retry, a second worker) submits the same job, not another', async () => {
    const { services } = world
    const tick = tickProcessor({ schedules: [every], tasks: services.tasks, logger: silent })
    const job = { id: `repeat:${every.name}:1700000000000`, data: { schedule: every.name } }
    const first = await tick(job)
    const second = await tick(job)
    expect(second).toEqual(first)
    const id = scheduledRunId(every.name, job.id)
    expect(first).toEqual({ jobId: id })
    await settled(services.tasks, id, 'system')
    const records = await services.host.sql`select id from sys_jobs where id = ${id}`
    expect(records).toHaveLength(1)
    // A tick of a schedule since removed from the code does nothing.
    expect(await tick({ id: 'repeat:gone:1', data: { schedule: 'gone' } })).toEqual({ skipped: 'unknown schedule' })
  })

  it('installing again changes nothing (idempotent upserts)', async () => {
    const queue = new Queue(SCHEDULES_QUEUE, { connection: world.services.redis, prefix: queuePrefix(world.services.config, SCHEDULES_QUEUE) })
    try {
      const before = (await queue.getJobSchedulers(0, -1)).map((s) => s.key).sort()
      expect(await installSchedules(queue, [...KIT_SCHEDULES, every])).toEqual([])
      expect((await queue.getJobSchedulers(0, -1)).map((s) => s.key).sort()).toEqual(before)
    } finally {
      await queue.close()
    }
  })
})
