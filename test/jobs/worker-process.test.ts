/**
 * The real worker process (`node --import tsx src/worker.ts`) under SIGTERM and SIGKILL. The test
 * process submits and inspects jobs through its own task manager; the child does the work.
 */
import { eq } from 'drizzle-orm'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../../drizzle/tenant/schema.js'
import { uuidv7 } from 'uuidv7'
import { outboxJobId } from '../../src/core/jobs/outbox.js'
import { createTaskManager, type TaskManager } from '../../src/core/jobs/task-manager.js'
import type { TenantRecord } from '../../src/core/tenancy/types.js'
import { slowJobs } from './fixtures/slow-jobs.js'
import { createJobsWorld, type JobsWorld, settled, silent, until } from './helpers.js'
import { killSpawnedWorkers, spawnWorker as spawnChild } from './worker-child.js'

const spawnWorker = (vars: Record<string, string>, extra: Record<string, string> = {}) =>
  spawnChild(
    [
      '--queues',
      'tenant',
      '--concurrency',
      '2',
      // Short locks so a killed worker's job is recovered in about two seconds.
      '--lock-duration-ms',
      '1000',
      '--stalled-interval-ms',
      '500',
      '--jobs',
      'test/jobs/fixtures/slow-jobs.ts',
    ],
    vars,
    extra,
  )

let world: JobsWorld
let tasks: TaskManager<typeof slowJobs>
let tenant: TenantRecord

beforeAll(async () => {
  world = await createJobsWorld()
  tasks = createTaskManager({ registry: slowJobs, deps: {}, ...world.services, config: world.env.config, logger: silent })
  tenant = await world.tenant('proc')
})
afterEach(async () => {
  await killSpawnedWorkers()
})
afterAll(async () => {
  await tasks?.close()
  await world?.close()
})

const rowsNamed = (marker: string) =>
  world.services.pools.withTenant(tenant, (db) => db.select({ id: projects.id }).from(projects).where(eq(projects.name, marker)))

async function whenRunning(id: string) {
  await until(async () => (await tasks.getJob(id, { tenantId: tenant.id })).status === 'running', 20_000, `job ${id} to start`)
}

describe('worker process', () => {
  it('SIGTERM during a job: takes no new jobs, lets the running one finish, exits 0', async () => {
    const worker = spawnWorker(world.env.vars)
    await worker.waitForLog('worker started')
    const job = await tasks.submit('test.slow_insert', { tenantId: tenant.id, marker: 'term', ms: 1500 })
    await whenRunning(job.id)

    worker.proc.kill('SIGTERM')
    await worker.waitForLog('worker stopping')
    const late = await tasks.submit('test.slow_insert', { tenantId: tenant.id, marker: 'late', ms: 0 })

    const { code, signal } = await worker.exited
    expect({ code, signal }, worker.output()).toEqual({ code: 0, signal: null })
    expect(worker.output()).toContain('"drained":true')
    const view = await tasks.getJob(job.id, { tenantId: tenant.id })
    expect(view).toMatchObject({ status: 'completed', queueState: 'completed', retryCount: 0 })
    expect(view.result).toMatchObject({ marker: 'term', pid: worker.proc.pid })
    expect(await rowsNamed('term')).toHaveLength(1)
    // The job submitted after SIGTERM waits for the next worker.
    expect(await tasks.getJob(late.id, { tenantId: tenant.id })).toMatchObject({ status: 'pending', queueState: 'waiting' })
    expect(await rowsNamed('late')).toHaveLength(0)

    const next = spawnWorker(world.env.vars)
    await next.waitForLog('worker started')
    expect(await settled(tasks, late.id, { tenantId: tenant.id })).toMatchObject({ status: 'completed' })
    next.proc.kill('SIGTERM')
    expect(await next.exited).toEqual({ code: 0, signal: null })
  })

  it('sweeps the outbox: a job owed since the queue was unreachable is submitted and runs once', async () => {
    const jobId = outboxJobId('test.slow_insert', 'worker-sweep')
    const payload = { tenantId: tenant.id, marker: 'swept', ms: 0 }
    // As the webhook leaves it when Redis is down: written with its change, never submitted.
    await world.services.host.sql`
      insert into core_outbox (id, job_name, dedupe_key, job_id, payload)
      values (${uuidv7()}, 'test.slow_insert', 'worker-sweep', ${jobId}, ${JSON.stringify(payload)}::jsonb)`
    const worker = spawnWorker(world.env.vars, { OUTBOX_SWEEP_INTERVAL_MS: '200' })
    await worker.waitForLog('worker started', 60_000)
    await until(
      async () =>
        (await world.services.host.sql`select 1 from core_outbox where job_id = ${jobId} and dispatched_at is not null`).length > 0,
      10_000,
      'the outbox row marked dispatched',
    )
    expect(await settled(tasks, jobId, { tenantId: tenant.id })).toMatchObject({ status: 'completed', retryCount: 0 })
    expect(await rowsNamed('swept')).toHaveLength(1)
    worker.proc.kill('SIGTERM')
    expect(await worker.exited).toEqual({ code: 0, signal: null })
  }, 120_000)

  it('SIGKILL during a job: after a restart the stalled job is picked up and completes exactly once', async () => {
    const first = spawnWorker(world.env.vars)
    await first.waitForLog('worker started')
    const job = await tasks.submit('test.slow_insert', { tenantId: tenant.id, marker: 'kill', ms: 1500 })
    await whenRunning(job.id)
    first.proc.kill('SIGKILL')
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' })
    expect(await tasks.getJob(job.id, { tenantId: tenant.id })).toMatchObject({ status: 'running', queueState: 'active' })

    const second = spawnWorker(world.env.vars)
    await second.waitForLog('worker started')
    const view = await settled(tasks, job.id, { tenantId: tenant.id }, 20_000)
    expect(view, second.output()).toMatchObject({ status: 'completed', retryCount: 0 })
    expect((view.result as { pid: number }).pid).toBe(second.proc.pid)
    expect(await rowsNamed('kill')).toHaveLength(1)
    const bull = await tasks.queues.tenant.getJob(job.id)
    expect(bull).toMatchObject({ stalledCounter: 1, attemptsMade: 1 })
    // Its tenant slot was re-entered by the same job, then released.
    expect(await tasks.slots.holders(tenant.id)).toEqual([])

    second.proc.kill('SIGTERM')
    expect(await second.exited).toEqual({ code: 0, signal: null })
  })

  it('SIGTERM with a job longer than WORKER_SHUTDOWN_TIMEOUT_MS: exits 0 at the deadline; the job is recovered and runs once', async () => {
    const impatient = spawnWorker(world.env.vars, { WORKER_SHUTDOWN_TIMEOUT_MS: '300' })
    await impatient.waitForLog('worker started')
    const job = await tasks.submit('test.slow_insert', { tenantId: tenant.id, marker: 'deadline', ms: 3000 })
    await whenRunning(job.id)
    impatient.proc.kill('SIGTERM')
    expect(await impatient.exited).toEqual({ code: 0, signal: null })
    // It left before the job finished: the job is still running by its record and BullMQ, with no side effect.
    expect(impatient.output()).toContain('"drained":false')
    expect(await tasks.getJob(job.id, { tenantId: tenant.id })).toMatchObject({ status: 'running', queueState: 'active' })
    expect(await rowsNamed('deadline')).toHaveLength(0)

    const next = spawnWorker(world.env.vars)
    await next.waitForLog('worker started')
    const view = await settled(tasks, job.id, { tenantId: tenant.id }, 20_000)
    expect(view).toMatchObject({ status: 'completed', retryCount: 0 })
    expect(await rowsNamed('deadline')).toHaveLength(1)
    next.proc.kill('SIGTERM')
    expect(await next.exited).toEqual({ code: 0, signal: null })
  })
})
