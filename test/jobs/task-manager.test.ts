import { uuidv7 } from 'uuidv7'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../../drizzle/tenant/schema.js'
import { createMailer, type Mailer } from '../../src/core/email/index.js'
import { BUILT_IN_JOBS } from '../../src/core/jobs/built-in.js'
import { PROJECT_JOBS } from '../../src/features/projects/jobs.js'
import { systemRecords } from '../../src/core/jobs/records.js'
import { derivedJobId, type JobContext, pipeline, systemJob, tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager, type JobWorkers, type TaskManager } from '../../src/core/jobs/task-manager.js'
import type { TenantRecord } from '../../src/core/tenancy/types.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { createJobsWorld, expectAppError, type JobsWorld, queuesIdle, settled, silent, until } from './helpers.js'

/** Attempts seen per job id (the workers run in this process). */
const attempts = new Map<string, number>()
const stepLog: string[] = []
const fast = { type: 'exponential', delayMs: 20 } as const

const registry = {
  ...BUILT_IN_JOBS,
  ...PROJECT_JOBS,
  'test.flaky': systemJob({
    payload: Type.Object({ failTimes: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
    maxRetries: 2,
    backoff: fast,
    async process(ctx, p) {
      const n = (attempts.get(ctx.jobId) ?? 0) + 1
      attempts.set(ctx.jobId, n)
      expect(ctx.attempt).toBe(n)
      if (n <= p.failTimes) throw new Error(`flaky failure ${n}`)
      return { attempts: n }
    },
  }),
  'test.tenant_flaky': tenantJob({
    payload: { name: Type.String({ minLength: 1 }), failTimes: Type.Integer({ minimum: 0 }) },
    maxRetries: 3,
    backoff: fast,
    async process(ctx, p) {
      const n = (attempts.get(ctx.jobId) ?? 0) + 1
      attempts.set(ctx.jobId, n)
      if (n <= p.failTimes) throw new Error(`tenant flaky failure ${n}`)
      const [row] = await ctx.db.insert(projects).values({ name: p.name }).returning({ id: projects.id })
      return { projectId: row!.id }
    },
  }),
  ...pipeline(
    'test.steps',
    Type.Object({ run: Type.String() }),
    (['one', 'two', 'three'] as const).map(
      (step) =>
        [
          step,
          async (ctx: JobContext, p: { run: string }) => {
            const n = (attempts.get(ctx.jobId) ?? 0) + 1
            attempts.set(ctx.jobId, n)
            stepLog.push(`${p.run}:${step}:${n}`)
            // Step two fails its first attempt: the pipeline must carry on once, not twice.
            if (step === 'two' && n === 1) throw new Error('step two hiccup')
          },
        ] as const,
    ),
    { backoff: fast },
  ),
}

let world: JobsWorld
let smtp: SmtpCapture
let mailer: Mailer
let tasks: TaskManager<typeof registry>
let workers: JobWorkers
let acme: TenantRecord
let globex: TenantRecord

beforeAll(async () => {
  smtp = await startSmtpCapture({ rejectRecipient: (a) => a.startsWith('bounce') })
  world = await createJobsWorld({
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    SMTP_STARTTLS: 'false',
    SMTP_MAIL_FROM: 'kit@example.com',
  })
  const { services } = world
  mailer = createMailer(world.env.config.smtp, silent)
  tasks = createTaskManager({ registry, deps: { mailer }, ...services, config: world.env.config, logger: silent })
  workers = tasks.startWorkers({ concurrency: 4 })
  await workers.ready()
  acme = await world.tenant('acme')
  globex = await world.tenant('globex')
})
afterAll(async () => {
  await tasks?.close()
  mailer?.close()
  await smtp?.close()
  await world?.close()
})

describe('submit → process → record', () => {
  it('runs a tenant job against its own database and records the result in tenant_jobs', async () => {
    await world.services.pools.withTenant(acme, (db) => db.insert(projects).values([{ name: 'a' }, { name: 'b', status: 'archived' }]))
    const job = await tasks.submit('projects.recount', { tenantId: acme.id })
    expect(job).toMatchObject({ name: 'projects.recount', scope: 'tenant', tenantId: acme.id })
    const view = await settled(tasks, job.id, { tenantId: acme.id })
    expect(view).toMatchObject({ status: 'completed', queueState: 'completed', jobType: 'projects.recount', retryCount: 0, maxRetries: 2 })
    expect(view.result).toEqual({ total: 2, active: 1, archived: 1 })
    expect(view.startedAt).toBeInstanceOf(Date)
    expect(view.finishedAt!.getTime()).toBeGreaterThanOrEqual(view.startedAt!.getTime())
    // The record lives in the tenant's database, not the host's and not another tenant's.
    await expect(tasks.getJob(job.id, 'system')).rejects.toMatchObject({ statusCode: 404, code: 'JOB_NOT_FOUND' })
    await expect(tasks.getJob(job.id, { tenantId: globex.id })).rejects.toMatchObject({ statusCode: 404, code: 'JOB_NOT_FOUND' })
  })

  it('sends email through email.send (system job recorded in sys_jobs) to a real SMTP server', async () => {
    const before = smtp.messages.length
    const job = await tasks.submit('email.send', {
      to: 'ada@example.com',
      template: 'welcome',
      variables: { user_name: 'Ada <b>', tenant_name: 'Acme', dashboard_url: 'https://acme.example.com/dash' },
    })
    const view = await settled(tasks, job.id, 'system')
    expect(view).toMatchObject({ status: 'completed', scope: 'system', retryCount: 0, maxRetries: 5 })
    expect((view.result as { messageId: string }).messageId).toMatch(/@/)
    const [mail] = (await smtp.waitFor(before + 1)).slice(before)
    expect(mail!.envelope.to).toEqual(['ada@example.com'])
    expect(mail!.html).toContain('Ada &lt;b&gt;')
  })

  it('email.send_batch fans out one email.send per recipient; a refused recipient fails alone, without retries', async () => {
    const before = smtp.messages.length
    const batch = await tasks.submit('email.send_batch', {
      template: 'invitation',
      variables: { inviter_name: 'Ada', tenant_name: 'Acme', invitation_url: 'https://acme.example.com/join', expires_in: '7 days' },
      recipients: [{ to: 'bob@example.com' }, { to: 'bounce@example.com' }, { to: 'cy@example.com', variables: { inviter_name: 'Grace' } }],
    })
    const view = await settled(tasks, batch.id, 'system')
    expect(view.status).toBe('completed')
    const childIds = (view.result as { jobIds: string[] }).jobIds
    expect(childIds).toEqual([0, 1, 2].map((i) => derivedJobId(batch.id, `recipient:${i}`)))
    const children = await Promise.all(childIds.map((id) => settled(tasks, id, 'system')))
    expect(children.map((c) => c.status)).toEqual(['completed', 'failed', 'completed'])
    expect(children[1]).toMatchObject({ retryCount: 0, queueState: 'failed' })
    expect(children[1]!.errorLog).toMatch(/550|Mailbox unavailable/)
    const received = (await smtp.waitFor(before + 2)).slice(before)
    expect(received.map((m) => m.envelope.to[0]).sort()).toEqual(['bob@example.com', 'cy@example.com'])
    expect(received.find((m) => m.envelope.to[0] === 'cy@example.com')!.text).toContain('Grace')
    // BullMQ ran the refused message exactly once.
    const bull = await tasks.queues.system.getJob(childIds[1]!)
    expect(bull!.attemptsMade).toBe(1)
  })
})

describe('bad payloads', () => {
  it('are rejected at submit time with 400 INVALID_JOB_PAYLOAD naming the field, and nothing is recorded', async () => {
    const before = await tasks.listJobs({ type: 'email.send', limit: 200 })
    const err = await tasks.submit('email.send', { to: 'not-an-email', template: 'welcome', variables: {} }).catch((e) => e)
    expectAppError(err, 400, 'INVALID_JOB_PAYLOAD')
    expect(err.message).toContain('/to')
    const missing = await tasks.submit('test.flaky', {} as { failTimes: number }).catch((e) => e)
    expectAppError(missing, 400, 'INVALID_JOB_PAYLOAD')
    expect(missing.message).toContain('/failTimes is required')
    const extra = await tasks.submit('test.flaky', { failTimes: 0, sneaky: 1 } as { failTimes: number }).catch((e) => e)
    expect(extra.message).toContain('/sneaky is not allowed')
    // A tenant job without its tenant id is a bad payload too.
    const noTenant = await tasks.submit('projects.recount', {} as { tenantId: string }).catch((e) => e)
    expectAppError(noTenant, 400, 'INVALID_JOB_PAYLOAD')
    expect(noTenant.message).toContain('/tenantId is required')
    expect(await tasks.listJobs({ type: 'email.send', limit: 200 })).toHaveLength(before.length)
  })

  it('rejects unknown job types (400) and unknown tenants (404)', async () => {
    expectAppError(await tasks.submit('nope' as 'email.send', {} as never).catch((e) => e), 400, 'UNKNOWN_JOB_TYPE')
    expectAppError(await tasks.submit('projects.recount', { tenantId: uuidv7() }).catch((e) => e), 404, 'TENANT_NOT_FOUND')
  })

  it('are caught again at processing time: the job fails at once, without retries', async () => {
    // Enqueued valid (delayed), then its data is changed in Redis behind the task manager's back.
    const job = await tasks.submit('test.flaky', { failTimes: 0 }, { delayMs: 60_000 })
    const bull = await tasks.queues.system.getJob(job.id)
    await bull!.updateData({ failTimes: 'lots' })
    await bull!.promote()
    const view = await settled(tasks, job.id, 'system')
    expect(view).toMatchObject({ status: 'failed', queueState: 'failed', retryCount: 0 })
    expect(view.errorLog).toContain('INVALID_JOB_PAYLOAD')
    expect(view.errorLog).toContain('/failTimes')
    expect(attempts.has(job.id)).toBe(false) // the processor never ran
    expect((await tasks.queues.system.getJob(job.id))!.attemptsMade).toBe(1)
  })
})

describe('retries', () => {
  it('a job that fails twice then succeeds: retry_count 2, completed, BullMQ agrees', async () => {
    const job = await tasks.submit('test.flaky', { failTimes: 2 })
    const view = await settled(tasks, job.id, 'system')
    expect(view).toMatchObject({ status: 'completed', queueState: 'completed', retryCount: 2, maxRetries: 2, result: { attempts: 3 } })
    // The last failure stays on the record for the curious.
    expect(view.errorLog).toContain('flaky failure 2')
    const bull = await tasks.queues.system.getJob(job.id)
    expect(bull!.attemptsMade).toBe(3)
    expect(bull!.returnvalue).toEqual({ attempts: 3 })
  })

  it('retry exhaustion: failed with the error and its stack in error_log, after max_retries retries', async () => {
    const job = await tasks.submit('test.flaky', { failTimes: 99 })
    const view = await settled(tasks, job.id, 'system')
    expect(view).toMatchObject({ status: 'failed', queueState: 'failed', retryCount: 2, maxRetries: 2 })
    expect(view.errorLog).toMatch(/^Error: flaky failure 3\n\s+at /)
    expect(attempts.get(job.id)).toBe(3)
    const bull = await tasks.queues.system.getJob(job.id)
    expect(bull!.attemptsMade).toBe(3)
    expect(bull!.failedReason).toBe('flaky failure 3')
  })

  it('tenant jobs retry the same way, with the record in the tenant database', async () => {
    const job = await tasks.submit('test.tenant_flaky', { tenantId: globex.id, name: 'retried', failTimes: 1 })
    const view = await settled(tasks, job.id, { tenantId: globex.id })
    expect(view).toMatchObject({ status: 'completed', retryCount: 1, maxRetries: 3, tenantId: globex.id })
    const names = await world.services.pools.withTenant(globex, (db) => db.select({ name: projects.name }).from(projects))
    expect(names).toEqual([{ name: 'retried' }])
  })
})

describe('idempotent submit and pipelines', () => {
  it('submitting an id that already ran is a no-op', async () => {
    const id = uuidv7()
    await tasks.submit('test.flaky', { failTimes: 0 }, { id })
    await settled(tasks, id, 'system')
    await tasks.submit('test.flaky', { failTimes: 0 }, { id })
    // A duplicate would be queued and run: once the queues are idle, anything submitted has run.
    await until(() => queuesIdle(tasks.queues), 15_000, 'the queues to be idle')
    expect(attempts.get(id)).toBe(1)
    expect(await tasks.getJob(id, 'system')).toMatchObject({ status: 'completed', retryCount: 0 })
  })

  it('a pipeline runs its steps in order, one job each, and a retried step starts the next step once', async () => {
    const first = await tasks.submit('test.steps.one', { run: 'p1' })
    const twoId = derivedJobId(first.id, 'next:0:test.steps.two')
    const threeId = derivedJobId(twoId, 'next:0:test.steps.three')
    const last = await until(async () => {
      const v = await tasks.getJob(threeId, 'system').catch(() => undefined)
      return v?.status === 'completed' ? v : undefined
    })
    expect(last.jobType).toBe('test.steps.three')
    expect(stepLog.filter((s) => s.startsWith('p1:'))).toEqual(['p1:one:1', 'p1:two:1', 'p1:two:2', 'p1:three:1'])
    expect(await tasks.getJob(twoId, 'system')).toMatchObject({ status: 'completed', retryCount: 1 })
  })
})

describe('getJob and listJobs', () => {
  it('filter by tenant, type and status, newest first, with a cursor', async () => {
    const ids: string[] = []
    for (let i = 0; i < 3; i++)
      ids.push((await tasks.submit('test.tenant_flaky', { tenantId: acme.id, name: `l${i}`, failTimes: i === 2 ? 99 : 0 })).id)
    await Promise.all(ids.map((id) => settled(tasks, id, { tenantId: acme.id })))

    const all = await tasks.listJobs({ tenantId: acme.id, type: 'test.tenant_flaky' })
    expect(all.map((r) => r.id)).toEqual([...ids].reverse())
    expect(all.every((r) => r.tenantId === acme.id && r.scope === 'tenant')).toBe(true)
    const failed = await tasks.listJobs({ tenantId: acme.id, status: 'failed' })
    expect(failed.map((r) => r.id)).toEqual([ids[2]])
    const page = await tasks.listJobs({ tenantId: acme.id, type: 'test.tenant_flaky', limit: 1, before: ids[2] })
    expect(page.map((r) => r.id)).toEqual([ids[1]])
    expect(await tasks.listJobs({ tenantId: globex.id, type: 'test.tenant_flaky', status: 'failed' })).toEqual([])
    // Without a tenant: the platform's system jobs.
    const system = await tasks.listJobs({ type: 'test.flaky', limit: 200 })
    expect(system.length).toBeGreaterThan(0)
    expect(system.every((r) => r.scope === 'system' && r.jobType === 'test.flaky')).toBe(true)
    await expect(tasks.getJob('not-a-uuid', 'system')).rejects.toMatchObject({ statusCode: 404 })
    await expect(tasks.listJobs({ before: 'nope' })).rejects.toMatchObject({ statusCode: 400, code: 'INVALID_CURSOR' })
  })
})

// Last in this file: it closes the workers.
describe('the "completed" write after the job returns', () => {
  it('BullMQ completes the job without waiting for its record; settled() and close() wait for the write', async () => {
    const { sql } = world.services.host
    const id = uuidv7()
    await systemRecords.insert(sql, [{ id, jobType: 'test.flaky', payload: { failTimes: 0 }, maxRetries: 2, tenantId: null }])
    // The record's row locked by another transaction: its status change cannot commit until we let go.
    let unlock!: () => void
    let locked!: () => void
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve
    })
    const holding = sql.begin(async (tx) => {
      await tx`select 1 from sys_jobs where id = ${id} for update`
      locked()
      await new Promise<void>((resolve) => {
        unlock = resolve
      })
    })
    await isLocked
    await tasks.submit('test.flaky', { failTimes: 0 }, { id })
    await until(async () => (await tasks.queues.system.getJobState(id)) === 'completed', 15_000, 'BullMQ to complete the job')
    // A plain read is not blocked by the lock: the record has not moved yet.
    expect(await tasks.getJob(id, 'system')).toMatchObject({ status: 'pending', queueState: 'completed' })
    const stillWriting = () => new Promise<string>((resolve) => setTimeout(() => resolve('still writing'), 300))
    expect(await Promise.race([workers.settled().then(() => 'settled'), stillWriting()])).toBe('still writing')
    const closing = workers.close()
    expect(await Promise.race([closing.then(() => 'closed'), stillWriting()])).toBe('still writing')
    unlock()
    await holding
    expect(await closing).toBe(true)
    await workers.settled()
    const view = await tasks.getJob(id, 'system')
    expect(view).toMatchObject({ status: 'completed', queueState: 'completed', retryCount: 0, result: { attempts: 1 } })
    expect(view.startedAt).not.toBeNull()
    expect(view.finishedAt).not.toBeNull()
  })
})
