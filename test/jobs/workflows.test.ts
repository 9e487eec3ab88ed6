/**
 * Workflows (src/core/jobs/workflows.ts) as BullMQ flows through the kit's task manager, with real Redis and
 * real tenant databases: results passed from step to step, a step failing its retries then the completed
 * steps compensated in reverse, a step timing out, and the run visible in /api/jobs to the tenant's admin and
 * to nobody in another tenant. Then the in-process Workflow with the same step API, and bad definitions.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { eq, like } from 'drizzle-orm'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../../drizzle/tenant/schema.js'
import { derivedJobId, tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager, type JobWorkers, type TaskManager } from '../../src/core/jobs/task-manager.js'
import {
  StepTimeoutError,
  tenantWorkflow,
  systemWorkflow,
  Workflow,
  WorkflowDefinitionError,
  WorkflowError,
} from '../../src/core/jobs/workflows.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { settled, silent } from './helpers.js'

const ctx = useApp({}, { closeTimeoutMs: 120_000 })

/** What the steps and compensations did, in order, per order id. */
const events: string[] = []
const attempts = new Map<string, number>()

const ORDER = tenantWorkflow('test.order', {
  payload: { orderId: Type.String(), failAt: Type.Optional(Type.String()), slowMs: Type.Optional(Type.Integer()) },
  steps: [
    {
      name: 'reserve',
      maxRetries: 0,
      async run({ payload }, step) {
        // the tenant's own database, through the tenant job's context
        await step.db.insert(projects).values({ name: `reserved-${payload.orderId}` })
        events.push(`reserve:${payload.orderId}`)
        return { reservation: `R-${payload.orderId}` }
      },
      async compensate({ payload, result }, step) {
        await step.db.delete(projects).where(eq(projects.name, `reserved-${payload.orderId}`))
        events.push(`unreserve:${(result as { reservation: string }).reservation}`)
      },
    },
    {
      name: 'charge',
      maxRetries: 0,
      run({ payload, previous }) {
        events.push(`charge:${payload.orderId}`)
        return { charge: `C-for-${(previous as { reservation: string }).reservation}` }
      },
      compensate({ payload, result, failedStep, error }) {
        events.push(`refund:${payload.orderId}:${(result as { charge: string }).charge}:${failedStep}:${error}`)
      },
    },
    {
      name: 'ship',
      maxRetries: 2,
      backoff: { type: 'fixed', delayMs: 20 },
      timeoutMs: 400,
      async run({ payload, previous, results }, step) {
        attempts.set(payload.orderId, step.attempt)
        if (payload.failAt === 'ship') throw new Error('carrier down')
        if (payload.slowMs) await sleep(payload.slowMs, undefined, { signal: step.signal }).catch(() => {})
        if (step.signal.aborted) throw step.signal.reason // a step that honours its timeout stops here
        events.push(`ship:${payload.orderId}`)
        return { tracking: `T-${payload.orderId}`, charge: (previous as { charge: string }).charge, earlier: Object.keys(results) }
      },
    },
  ],
})

// The registry names every job exactly (what `interface JobTypes extends Jobs<typeof ORDER> {}` gives submit's types).
type OrderJobs = keyof typeof ORDER
const names: OrderJobs[] = ['test.order', 'test.order.reserve', 'test.order.charge', 'test.order.ship', 'test.order.compensate']
// @ts-expect-error not a step of the workflow
const notAJob: OrderJobs = 'test.order.refund'
void notAJob

/** A job that starts a workflow (ctx.submitWorkflow), with an id derived from its own so a re-run starts none twice. */
const REGISTRY = {
  ...ORDER,
  'test.kickoff': tenantJob({
    payload: { orderId: Type.String() },
    maxRetries: 0,
    async process(ctx, p) {
      const run = await ctx.submitWorkflow(
        'test.order',
        { tenantId: p.tenantId, orderId: p.orderId },
        { id: derivedJobId(ctx.jobId, 'workflow') },
      )
      return { workflowId: run.id }
    },
  }),
}

let tasks: TaskManager<typeof REGISTRY>
let workers: JobWorkers
let a: TenantFixture
let b: TenantFixture

beforeAll(async () => {
  const app = ctx.app
  tasks = createTaskManager({ registry: REGISTRY, deps: {}, ...app.services, config: ctx.env.config, logger: silent })
  workers = tasks.startWorkers({ scopes: ['tenant'], concurrency: 4, reconcileIntervalMs: 0 })
  await workers.ready()
  a = await tenantWith(app)
  b = await tenantWith(app)
})
afterAll(async () => {
  await tasks?.close()
})

async function rowsNamed(t: TenantFixture, name: string): Promise<number> {
  const tenant = await ctx.app.services.catalog.get(t.id)
  return ctx.app.services.pools.withTenant(
    tenant!,
    async (db) => (await db.select().from(projects).where(like(projects.name, name))).length,
  )
}

describe('workflows as BullMQ flows', () => {
  it('runs the steps in order, each with the previous result and every earlier one; the workflow job completes with all of them', async () => {
    const run = await tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'o1' })
    expect(run.steps.map((s) => s.name)).toEqual(['test.order.reserve', 'test.order.charge', 'test.order.ship'])
    expect(Object.keys(ORDER).sort()).toEqual([...names].sort())
    const root = await settled(tasks, run.id, { tenantId: a.id })
    expect(root.status).toBe('completed')
    expect(root.result).toEqual({
      results: {
        reserve: { reservation: 'R-o1' },
        charge: { charge: 'C-for-R-o1' },
        ship: { tracking: 'T-o1', charge: 'C-for-R-o1', earlier: ['reserve', 'charge'] },
      },
    })
    expect(events.filter((e) => e.endsWith(':o1'))).toEqual(['reserve:o1', 'charge:o1', 'ship:o1'])
    for (const step of run.steps) {
      const view = await settled(tasks, step.id, { tenantId: a.id })
      expect(view.status).toBe('completed')
      expect(view.payload).toEqual({ tenantId: a.id, workflowId: run.id, input: { orderId: 'o1' } })
    }
    expect(await rowsNamed(a, 'reserved-o1')).toBe(1)
    // the same id again is a no-op
    const again = await tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'o1' }, { id: run.id })
    expect(again.id).toBe(run.id)
    expect(events.filter((e) => e === 'reserve:o1')).toHaveLength(1)
  })

  it('a step that fails every attempt fails the workflow, and the completed steps are compensated in reverse order', async () => {
    const run = await tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'o2', failAt: 'ship' })
    const root = await settled(tasks, run.id, { tenantId: a.id })
    expect(root.status).toBe('failed')
    const ship = await settled(tasks, run.steps[2]!.id, { tenantId: a.id })
    expect(ship.status).toBe('failed')
    expect(ship.retryCount).toBe(2)
    expect(ship.errorLog).toMatch(/carrier down/)
    expect(attempts.get('o2')).toBe(3)

    const [compensation] = await tasks.listJobs({ tenantId: a.id, type: 'test.order.compensate' })
    expect(compensation).toBeDefined()
    const done = await settled(tasks, compensation!.id, { tenantId: a.id })
    expect(done.status).toBe('completed')
    expect(done.result).toEqual({ failedStep: 'ship', compensated: ['charge', 'reserve'] })
    expect(events.filter((e) => e.includes('o2'))).toEqual([
      'reserve:o2',
      'charge:o2',
      'refund:o2:C-for-R-o2:ship:carrier down',
      'unreserve:R-o2',
    ])
    expect(await rowsNamed(a, 'reserved-o2')).toBe(0)
  })

  it('a step past its timeout fails the attempt (retried, then compensated)', async () => {
    const run = await tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'o3', slowMs: 5_000 })
    const ship = await settled(tasks, run.steps[2]!.id, { tenantId: a.id })
    expect(ship.status).toBe('failed')
    expect(ship.errorLog).toMatch(/step "ship" timed out after 400 ms/)
    expect(ship.retryCount).toBe(2)
    expect((await settled(tasks, run.id, { tenantId: a.id })).status).toBe('failed')
    await expect.poll(() => events.filter((e) => e.startsWith('unreserve:R-o3'))).toHaveLength(1)
    expect(events).not.toContain('ship:o3')
  })

  it("shows in the tenant's /api/jobs to its admin, and to no member of another tenant", async () => {
    const run = await tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'o4' })
    await settled(tasks, run.id, { tenantId: a.id })
    const list = await a.as(a.admin).get('/jobs?type=test.order')
    expect(list.statusCode).toBe(200)
    const mine = list.json().items.find((j: { id: string }) => j.id === run.id)
    expect(mine).toMatchObject({ jobType: 'test.order', status: 'completed', payload: { tenantId: a.id, orderId: 'o4' } })
    const one = await a.as(a.admin).get(`/jobs/${run.id}`)
    expect(one.statusCode).toBe(200)
    expect(one.json()).toMatchObject({ status: 'completed', queueState: 'completed' })
    const step = await a.as(a.admin).get(`/jobs/${run.steps[1]!.id}`)
    expect(step.json()).toMatchObject({
      jobType: 'test.order.charge',
      status: 'completed',
      result: { results: { charge: { charge: 'C-for-R-o4' } } },
    })

    // another tenant's admin: not through their tenant (not its job), not by naming this tenant (not a member)
    const viaOwn = await b.as(b.admin).get(`/jobs/${run.id}`)
    expect(viaOwn.statusCode).toBe(404)
    expect(viaOwn.json().code).toBe('JOB_NOT_FOUND')
    expect((await b.as(b.admin).get('/jobs?type=test.order')).json().items).toEqual([])
    const viaOther = await b.admin.c.get(`/api/jobs/${run.id}`, { 'x-tenant-id': a.slug })
    expect(viaOther.statusCode).toBe(404)
    expect(viaOther.json().code).toBe('TENANT_NOT_FOUND')
  })

  it('a step queued without its flow (Redis lost it; the reconcile sweep re-queues records alone) fails at once, uncompensated', async () => {
    const workflowId = '01938a2b-0000-7000-8000-000000000001'
    const job = await tasks.submit('test.order.charge', { tenantId: a.id, workflowId, input: { orderId: 'lost' } })
    const view = await settled(tasks, job.id, { tenantId: a.id })
    expect(view.status).toBe('failed')
    expect(view.retryCount).toBe(0)
    expect(view.errorLog).toMatch(/WORKFLOW_FLOW_LOST: test.order.charge has no result of the step before it/)
    expect(events.filter((e) => e.includes('lost'))).toEqual([])
    const compensations = await tasks.listJobs({ tenantId: a.id, type: 'test.order.compensate' })
    expect(compensations.filter((j) => j.payload.workflowId === workflowId)).toEqual([])
  })

  it('a job can start a workflow', async () => {
    const kickoff = await tasks.submit('test.kickoff', { tenantId: a.id, orderId: 'o5' })
    const done = await settled(tasks, kickoff.id, { tenantId: a.id })
    const { workflowId } = done.result as { workflowId: string }
    expect(workflowId).toBe(derivedJobId(kickoff.id, 'workflow'))
    const root = await settled(tasks, workflowId, { tenantId: a.id })
    expect(root.status).toBe('completed')
    expect(events).toContain('ship:o5')
  })

  it('refuses what is not a workflow, and a payload that does not match', async () => {
    await expect(tasks.submitWorkflow('test.order.ship' as 'test.order', { tenantId: a.id, orderId: 'x' })).rejects.toMatchObject({
      statusCode: 400,
      code: 'UNKNOWN_JOB_TYPE',
    })
    await expect(tasks.submitWorkflow('test.order', { tenantId: a.id } as never)).rejects.toMatchObject({
      statusCode: 400,
      code: 'INVALID_JOB_PAYLOAD',
    })
    await expect(tasks.submitWorkflow('test.order', { tenantId: a.id, orderId: 'x' }, { id: 'nope' })).rejects.toMatchObject({
      code: 'INVALID_JOB_ID',
    })
  })
})

describe('a system workflow', () => {
  const PLATFORM = systemWorkflow('test.platform', {
    payload: Type.Object({ label: Type.String() }, { additionalProperties: false }),
    steps: [
      { name: 'one', maxRetries: 0, run: ({ payload }) => `${payload.label}-1` },
      { name: 'two', maxRetries: 0, run: ({ previous }, step) => `${previous}-2 (${step.attempt})` },
    ],
  })
  it('runs with its records in sys_jobs', async () => {
    const sys = createTaskManager({ registry: PLATFORM, deps: {}, ...ctx.app.services, config: ctx.env.config, logger: silent })
    try {
      await sys.startWorkers({ scopes: ['system'], concurrency: 2, reconcileIntervalMs: 0 }).ready()
      const run = await sys.submitWorkflow('test.platform', { label: 'x' })
      const root = await settled(sys, run.id, 'system')
      expect(root).toMatchObject({ scope: 'system', status: 'completed', result: { results: { one: 'x-1', two: 'x-1-2 (1)' } } })
      expect((await settled(sys, run.steps[0]!.id, 'system')).payload).toEqual({ workflowId: run.id, input: { label: 'x' } })
    } finally {
      await sys.close()
    }
  })
})

describe('in-process Workflow (same step API)', () => {
  it('passes results on and resolves with all of them; plain functions are steps too', async () => {
    const wf = new Workflow<{ n: number }>([
      { name: 'double', run: ({ payload }) => payload.n * 2 },
      function addOne({ previous }) {
        return (previous as number) + 1
      },
      async ({ results }) => Object.keys(results),
    ])
    expect(wf.steps.map((s) => s.name)).toEqual(['double', 'addOne', 'step_3'])
    expect(await wf.execute({ n: 5 })).toEqual({ results: { double: 10, addOne: 11, step_3: ['double', 'addOne'] } })
  })

  it('retries a failing step, then compensates the completed steps in reverse order and names what failed', async () => {
    const log: string[] = []
    let tries = 0
    const wf = new Workflow([
      { name: 'a', run: () => 'A', compensate: ({ result }) => void log.push(`undo a (${result})`) },
      { name: 'b', run: () => 'B' }, // nothing to undo
      { name: 'c', run: () => 'C', compensate: ({ failedStep, error }) => void log.push(`undo c after ${failedStep}: ${error}`) },
      {
        name: 'd',
        maxRetries: 2,
        backoff: { type: 'fixed', delayMs: 1 },
        run: () => {
          tries++
          throw new Error('nope')
        },
      },
    ])
    const err = (await wf.execute().catch((e: unknown) => e)) as WorkflowError
    expect(err).toBeInstanceOf(WorkflowError)
    expect(tries).toBe(3)
    expect(err.failedStep).toBe('d')
    expect((err.cause as Error).message).toBe('nope')
    expect(err.compensated).toEqual(['c', 'a'])
    expect(log).toEqual(['undo c after d: nope', 'undo a (A)'])
    expect(err.results).toEqual({ a: 'A', b: 'B', c: 'C' })
    expect(err.message).toBe('workflow step "d" failed: nope; compensated c, a')
  })

  it('a compensation that fails does not stop the others, and is reported', async () => {
    const log: string[] = []
    const wf = new Workflow([
      { name: 'a', run: () => 1, compensate: () => void log.push('undo a') },
      {
        name: 'b',
        run: () => 2,
        compensate: () => {
          throw new Error('undo broke')
        },
      },
      {
        name: 'c',
        run: () => {
          throw new Error('fail')
        },
      },
    ])
    const err = (await wf.execute().catch((e: unknown) => e)) as WorkflowError
    expect(log).toEqual(['undo a'])
    expect(err.compensated).toEqual(['a'])
    expect(err.compensationErrors.map((e) => e.step)).toEqual(['b'])
    expect(err.message).toMatch(/compensation failed for b/)
  })

  it('a step past its timeoutMs fails with StepTimeoutError and its signal aborted', async () => {
    let aborted = false
    const wf = new Workflow([
      {
        name: 'slow',
        timeoutMs: 50,
        run: async (_input, step) => {
          step.signal.addEventListener('abort', () => {
            aborted = true
          })
          await sleep(2_000, undefined, { signal: step.signal }).catch(() => {})
        },
      },
    ])
    const started = Date.now()
    const err = (await wf.execute().catch((e: unknown) => e)) as WorkflowError
    expect(err.cause).toBeInstanceOf(StepTimeoutError)
    expect((err.cause as Error).message).toBe('step "slow" timed out after 50 ms')
    expect(aborted).toBe(true)
    expect(Date.now() - started).toBeLessThan(1_000)
  })

  it('bad definitions are refused when defined', () => {
    const bad = (make: () => unknown, message: RegExp) => {
      expect(make).toThrow(WorkflowDefinitionError)
      expect(make).toThrow(message)
    }
    bad(() => new Workflow([]), /steps must be a non-empty list/)
    bad(() => new Workflow('x' as never), /steps must be a non-empty list/)
    bad(() => new Workflow([{ name: 'a' } as never]), /step 1 has no run\(\)/)
    bad(() => new Workflow([{ name: 'Bad Name', run: () => 1 }]), /name "Bad Name" must be letters, digits or _/)
    bad(
      () =>
        new Workflow([
          { name: 'a', run: () => 1 },
          { name: 'a', run: () => 2 },
        ]),
      /two steps are named "a"/,
    )
    bad(() => new Workflow([{ name: 'a', run: () => 1, maxRetries: -1 }]), /maxRetries must be an integer/)
    bad(() => new Workflow([{ name: 'a', run: () => 1, timeoutMs: 0 }]), /timeoutMs must be a positive/)
    bad(() => new Workflow([{ name: 'a', run: () => 1, compensate: 'x' as never }]), /compensate must be a function/)
    bad(() => tenantWorkflow('Bad', { payload: {}, steps: [{ name: 'a', run: () => 1 }] }), /workflow name "Bad" must be dotted lower-case/)
    bad(() => tenantWorkflow('x.y', { payload: {}, steps: [{ name: 'compensate', run: () => 1 }] }), /"compensate" is reserved/)
    bad(() => systemWorkflow('x.y', { payload: Type.Object({}), steps: [] }), /non-empty list/)
  })
})
