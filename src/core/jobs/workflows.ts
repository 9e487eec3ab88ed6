/**
 * Workflows (the seed's `Workflow(steps).execute()`): a sequence of named steps, each getting the payload,
 * the previous step's result and every earlier result, each with its own retries and timeout, and an
 * optional `compensate` that undoes it. When a step fails for good, the steps that completed are compensated
 * in reverse order (a saga); the failed step itself is not (it did not complete).
 *
 * One step API, two runners:
 * - `new Workflow(steps).execute(payload)`: in this process, for short sequences inside a request or a job;
 * - `tenantWorkflow(name, { payload, steps })` / `systemWorkflow(...)`: a job registry to list in a feature's
 *   manifest (`jobs:`), run as a BullMQ flow through the task manager (`tasks.submitWorkflow(name, payload)`):
 *   one job per step, chained parent after child so each starts when the one before completed, plus the
 *   workflow's own job `<name>`, which completes last with every result, and `<name>.compensate`, submitted
 *   when a step fails for good. Every one has a job record, so `/api/jobs` (tenant workflows) shows the
 *   workflow, its steps (payload.workflowId) and the compensation, each with its status, result and error.
 *
 * A step that fails its last attempt fails the steps after it and the workflow's job (BullMQ's
 * failParentOnFailure; their records follow through the worker's failure path), and submits the compensation
 * job, which runs each completed step's `compensate` at most once (ctx.once) and retries as a whole.
 * A step's timeout aborts `ctx.signal` and fails the attempt (retried like any failure); a step that ignores the
 * signal keeps running in the background, so steps pass the signal on (the HTTP client takes it).
 * Results travel in Redis and the job records: they must be JSON (undefined becomes null).
 */
import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import { type Static, type TObject, type TProperties, type TSchema, Type } from 'typebox'
import { Uuid } from '../lib/schemas.js'
import {
  type Backoff,
  DEFAULT_BACKOFF,
  DEFAULT_MAX_RETRIES,
  derivedJobId,
  type JobContext,
  type JobDefinition,
  type SystemJobDefinition,
  systemJob,
  type TenantJobContext,
  type TenantJobDefinition,
  type TenantPayload,
  tenantJob,
} from './registry.js'

export interface StepInput<P> {
  payload: P
  /** The result of the step before (undefined for the first). */
  previous: unknown
  /** Every earlier step's result by step name. */
  results: Record<string, unknown>
}

export interface CompensationInput<P> {
  payload: P
  /** What this step returned. */
  result: unknown
  results: Record<string, unknown>
  /** The step that failed, and why. */
  failedStep: string
  error: string
}

/** What every runner gives a step: the attempt's abort signal (timeout), its number, a logger. */
export interface StepRuntime {
  signal: AbortSignal
  /** 1 for the first attempt. */
  attempt: number
  logger?: Logger
}

export interface WorkflowStep<P = unknown, C extends StepRuntime = StepRuntime> {
  /** Unique in the workflow: letters, digits, _ (it names the step's job: `<workflow>.<step>`). */
  name: string
  run(input: StepInput<P>, ctx: C): unknown
  /** Undo this step after a later step failed for good. Must be idempotent (it may run again after a crash). */
  compensate?(input: CompensationInput<P>, ctx: C): unknown
  /** Retries after the first attempt (in-process default 0; as jobs DEFAULT_MAX_RETRIES, 3). */
  maxRetries?: number
  backoff?: Backoff
  /** One attempt's limit (default none). */
  timeoutMs?: number
}

const STEP_NAME = /^[A-Za-z][A-Za-z0-9_]{0,62}$/

export class WorkflowDefinitionError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WorkflowDefinitionError'
  }
}

/** A step's attempt ran past its timeoutMs. */
export class StepTimeoutError extends Error {
  constructor(
    readonly step: string,
    readonly timeoutMs: number,
  ) {
    super(`step "${step}" timed out after ${timeoutMs} ms`)
    this.name = 'StepTimeoutError'
  }
}

/** An in-process workflow failed: which step, why, what was compensated (and which compensations failed). */
export class WorkflowError extends Error {
  constructor(
    readonly failedStep: string,
    override readonly cause: unknown,
    readonly results: Record<string, unknown>,
    readonly compensated: string[],
    readonly compensationErrors: { step: string; error: unknown }[],
  ) {
    super(
      `workflow step "${failedStep}" failed: ${cause instanceof Error ? cause.message : String(cause)}` +
        (compensated.length ? `; compensated ${compensated.join(', ')}` : '') +
        (compensationErrors.length ? `; compensation failed for ${compensationErrors.map((e) => e.step).join(', ')}` : ''),
    )
    this.name = 'WorkflowError'
  }
}

function checkSteps(steps: readonly WorkflowStep<never, never>[], where: string) {
  if (!Array.isArray(steps) || steps.length === 0) throw new WorkflowDefinitionError(`${where}: steps must be a non-empty list`)
  const seen = new Set<string>()
  for (const [i, s] of steps.entries()) {
    if (typeof s !== 'object' || s === null || typeof s.run !== 'function')
      throw new WorkflowDefinitionError(`${where}: step ${i + 1} has no run()`)
    if (typeof s.name !== 'string' || !STEP_NAME.test(s.name))
      throw new WorkflowDefinitionError(
        `${where}: step ${i + 1} name ${JSON.stringify(s.name)} must be letters, digits or _ (starting with a letter)`,
      )
    if (s.name === 'compensate') throw new WorkflowDefinitionError(`${where}: "compensate" is reserved`)
    if (seen.has(s.name)) throw new WorkflowDefinitionError(`${where}: two steps are named "${s.name}"`)
    seen.add(s.name)
    if (s.compensate !== undefined && typeof s.compensate !== 'function')
      throw new WorkflowDefinitionError(`${where}: step "${s.name}" compensate must be a function`)
    if (s.maxRetries !== undefined && (!Number.isInteger(s.maxRetries) || s.maxRetries < 0 || s.maxRetries > 100))
      throw new WorkflowDefinitionError(`${where}: step "${s.name}" maxRetries must be an integer from 0 to 100`)
    if (s.timeoutMs !== undefined && (!Number.isFinite(s.timeoutMs) || s.timeoutMs <= 0 || s.timeoutMs > 2 ** 31 - 1))
      throw new WorkflowDefinitionError(`${where}: step "${s.name}" timeoutMs must be a positive number of milliseconds`)
  }
}

/** Runs one attempt of `fn` with `timeoutMs` (if any): the signal aborts and StepTimeoutError is thrown when it passes. */
export async function withStepTimeout<T>(
  step: string,
  timeoutMs: number | undefined,
  outer: AbortSignal | undefined,
  fn: (signal: AbortSignal) => T,
): Promise<Awaited<T>> {
  const ctl = new AbortController()
  const onOuter = () => ctl.abort(outer?.reason)
  outer?.addEventListener('abort', onOuter, { once: true })
  let timer: NodeJS.Timeout | undefined
  try {
    const work = Promise.resolve().then(() => fn(ctl.signal))
    if (timeoutMs === undefined) return await work
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new StepTimeoutError(step, timeoutMs)
        ctl.abort(err)
        reject(err)
      }, timeoutMs)
    })
    work.catch(() => {}) // a step that fails after its timeout: already reported as the timeout
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
    outer?.removeEventListener('abort', onOuter)
  }
}

const delayOf = (backoff: Backoff, retry: number) => (backoff.type === 'fixed' ? backoff.delayMs : backoff.delayMs * 2 ** retry)
const json = (v: unknown) => (v === undefined ? null : v)

/** A step, or a plain function (named by the function, else `step_<n>`), as the seed's `Workflow([fn, fn])` takes. */
export type StepOrFunction<P> = WorkflowStep<P> | ((input: StepInput<P>, ctx: StepRuntime) => unknown)

/**
 * In-process workflow: `await new Workflow([reserve, charge, ship]).execute(order)` resolves with every result
 * by step name, or rejects with a WorkflowError after compensating the completed steps in reverse order.
 */
export class Workflow<P = unknown> {
  readonly steps: readonly WorkflowStep<P>[]
  constructor(steps: readonly StepOrFunction<P>[]) {
    if (!Array.isArray(steps)) throw new WorkflowDefinitionError('Workflow: steps must be a non-empty list')
    this.steps = steps.map((s, i) =>
      typeof s === 'function' ? { name: s.name && STEP_NAME.test(s.name) ? s.name : `step_${i + 1}`, run: s } : s,
    )
    checkSteps(this.steps as WorkflowStep<never, never>[], 'Workflow')
  }

  async execute(payload?: P, opts: { logger?: Logger; signal?: AbortSignal } = {}): Promise<{ results: Record<string, unknown> }> {
    const results: Record<string, unknown> = {}
    const done: WorkflowStep<P>[] = []
    let previous: unknown
    for (const step of this.steps) {
      const maxRetries = step.maxRetries ?? 0
      const backoff = step.backoff ?? { type: 'exponential', delayMs: 100 }
      for (let attempt = 1; ; attempt++) {
        try {
          const result = await withStepTimeout(step.name, step.timeoutMs, opts.signal, (signal) =>
            step.run(
              { payload: payload as P, previous, results: { ...results } },
              { signal, attempt, ...(opts.logger ? { logger: opts.logger } : {}) },
            ),
          )
          results[step.name] = result
          previous = result
          done.push(step)
          break
        } catch (err) {
          if (attempt <= maxRetries && !opts.signal?.aborted) {
            opts.logger?.warn({ err, step: step.name, attempt }, 'workflow step failed; retrying')
            await new Promise((r) => setTimeout(r, delayOf(backoff, attempt - 1)))
            continue
          }
          opts.logger?.error({ err, step: step.name, attempt }, 'workflow step failed; compensating')
          const message = err instanceof Error ? err.message : String(err)
          const compensated: string[] = []
          const compensationErrors: { step: string; error: unknown }[] = []
          for (const s of [...done].reverse()) {
            if (!s.compensate) continue
            try {
              await s.compensate(
                { payload: payload as P, result: results[s.name], results: { ...results }, failedStep: step.name, error: message },
                { signal: new AbortController().signal, attempt: 1, ...(opts.logger ? { logger: opts.logger } : {}) },
              )
              compensated.push(s.name)
            } catch (cErr) {
              // Keep going: the other steps' compensations still run; the error names what is left undone.
              compensationErrors.push({ step: s.name, error: cErr })
              opts.logger?.error({ err: cErr, step: s.name }, 'workflow compensation failed')
            }
          }
          throw new WorkflowError(step.name, err, results, compensated, compensationErrors)
        }
      }
    }
    return { results }
  }
}

// ---- As BullMQ flows -------------------------------------------------------------------------------

/** A tenant workflow's step context: the tenant job's (ctx.db, ctx.tenant, ctx.once…) plus the attempt's signal. */
export type TenantStepContext<D = unknown> = TenantJobContext<D> & { signal: AbortSignal }
export type SystemStepContext<D = unknown> = JobContext<D> & { signal: AbortSignal }

/** What the registry knows of a workflow: its step job names in order, and its compensation job. */
export interface WorkflowInfo {
  steps: readonly string[]
  compensate: string
}

/** The step jobs' payload: which workflow run, and its input. */
const stepPayload = <S extends TSchema>(input: S) => ({ workflowId: Uuid, input })
const compensationPayload = <S extends TSchema>(input: S) => ({
  workflowId: Uuid,
  input,
  failedStep: Type.String(),
  error: Type.String(),
  results: Type.Record(Type.String(), Type.Unknown()),
})

/**
 * A step (or the workflow's job) found no step before it in its flow: Redis lost the flow (no persistence) and the
 * reconcile sweep queued the job again on its own. Its input is gone, so it fails at once (no retry, no
 * compensation: what completed is unknown); start the workflow again.
 */
export class WorkflowFlowLostError extends Error {
  constructor(job: string) {
    super(`WORKFLOW_FLOW_LOST: ${job} has no result of the step before it (the flow was lost from the queue); start the workflow again`)
    this.name = 'WorkflowFlowLostError'
  }
}
const flowLost = (err: unknown) => err instanceof WorkflowFlowLostError

/** The last step's results, as the step's or workflow job's only child returned them. */
async function resultsBefore(job: Job): Promise<Record<string, unknown>> {
  const values = Object.values(await job.getChildrenValues()) as { results?: Record<string, unknown> }[]
  if (values.length === 0 || typeof values[0]?.results !== 'object') throw new WorkflowFlowLostError(job.name)
  return values[0].results as Record<string, unknown>
}

/** What a step job (and, with the failure's fields, the compensation job) is given. */
interface FlowPayload {
  tenantId?: string
  workflowId: string
  input: Record<string, unknown>
  failedStep?: string
  error?: string
  results?: Record<string, unknown>
}

function flowJobs<P, C extends JobContext & { signal?: AbortSignal }>(
  name: string,
  steps: readonly WorkflowStep<P, C & { signal: AbortSignal }>[],
  opts: { compensationRetries?: number },
  make: {
    /** tenantJob or systemJob, each typed at its call site. */
    job(def: {
      payload: TSchema | TProperties
      maxRetries: number
      backoff: Backoff
      permanent?: (err: unknown) => boolean
      process(ctx: C, p: FlowPayload): Promise<unknown>
    }): JobDefinition
    payloadOf(p: FlowPayload): P
    submitPayload(p: FlowPayload): Record<string, unknown>
    input: TSchema
  },
) {
  if (typeof name !== 'string' || !/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/.test(name))
    throw new WorkflowDefinitionError(`workflow name ${JSON.stringify(name)} must be dotted lower-case words (e.g. "orders.fulfil")`)
  checkSteps(steps as WorkflowStep<never, never>[], `workflow "${name}"`)
  const compensateName = `${name}.compensate`
  const jobs: Record<string, unknown> = {}

  steps.forEach((step, index) => {
    const maxRetries = step.maxRetries ?? DEFAULT_MAX_RETRIES
    jobs[`${name}.${step.name}`] = make.job({
      payload: stepPayload(make.input),
      maxRetries,
      backoff: step.backoff ?? DEFAULT_BACKOFF,
      permanent: flowLost,
      async process(ctx, p) {
        const results = index === 0 ? {} : await resultsBefore(ctx.job)
        const payload = make.payloadOf(p)
        try {
          const result = await withStepTimeout(step.name, step.timeoutMs, undefined, (signal) =>
            step.run(
              { payload, previous: index === 0 ? undefined : results[steps[index - 1]!.name], results },
              Object.assign(Object.create(ctx), { signal }),
            ),
          )
          return { results: { ...results, [step.name]: json(result) } }
        } catch (err) {
          if (ctx.attempt > maxRetries) {
            // The last attempt: BullMQ fails the later steps and the workflow's job; undo what completed.
            const toUndo = steps.slice(0, index).filter((s) => s.compensate)
            if (toUndo.length > 0) {
              await ctx.submit(
                compensateName,
                { ...make.submitPayload(p), failedStep: step.name, error: err instanceof Error ? err.message : String(err), results },
                { id: derivedJobId(p.workflowId, 'compensate') },
              )
            }
            ctx.logger.error(
              { err, workflow: name, step: step.name, workflowId: p.workflowId, compensating: toUndo.map((s) => s.name) },
              'workflow step failed for good',
            )
          }
          throw err
        }
      },
    })
  })

  jobs[compensateName] = make.job({
    payload: compensationPayload(make.input),
    maxRetries: opts.compensationRetries ?? DEFAULT_MAX_RETRIES,
    backoff: DEFAULT_BACKOFF,
    async process(ctx, p) {
      const payload = make.payloadOf(p)
      const { failedStep, error, results } = p as Required<FlowPayload>
      const failedAt = steps.findIndex((s) => s.name === failedStep)
      const compensated: string[] = []
      for (const step of steps.slice(0, Math.max(failedAt, 0)).reverse()) {
        if (!step.compensate) continue
        // Once per step, however often this job runs: a retry after the third compensation failed doesn't undo the first two again.
        await ctx.once(`compensate:${step.name}`, async () => {
          await withStepTimeout(step.name, step.timeoutMs, undefined, (signal) =>
            step.compensate!(
              { payload, result: results[step.name], results, failedStep, error },
              Object.assign(Object.create(ctx), { signal }),
            ),
          )
          return true
        })
        compensated.push(step.name)
      }
      return { failedStep, compensated }
    },
  })
  return { jobs, info: { steps: steps.map((s) => `${name}.${s.name}`), compensate: compensateName } satisfies WorkflowInfo }
}

/** A workflow's jobs by exact name: the workflow's own job, one per step, and the compensation job. */
export type WorkflowRegistry<N extends string, Step extends string, Root, Def> = Record<N, Root> &
  Record<`${N}.${Step}` | `${N}.compensate`, Def>

/**
 * A workflow over one tenant's data: `payload` lists its fields (`tenantId` is added, as for tenantJob), each
 * step gets the tenant job's context (ctx.db is the tenant's database) plus `ctx.signal`. List the result in a
 * feature's `jobs:` and declare it in JobTypes like any job registry; start it with `tasks.submitWorkflow(name, payload)`.
 */
export function tenantWorkflow<const N extends string, P extends TProperties, const Step extends string, D = unknown>(
  name: N,
  def: {
    payload: P
    steps: readonly (WorkflowStep<Static<TObject<P>> & { tenantId: string }, TenantStepContext<D>> & { name: Step })[]
    /** Retries of the compensation job (default 3). */
    compensationRetries?: number
  },
): WorkflowRegistry<N, Step, TenantJobDefinition<TenantPayload<P>, D, { results: Record<string, unknown> }>, TenantJobDefinition> {
  const input = Type.Object(def.payload, { additionalProperties: false })
  const { jobs, info } = flowJobs<Static<TObject<P>> & { tenantId: string }, TenantStepContext<D>>(name, def.steps, def, {
    // The step's payload type is FlowPayload by construction (its schema is built from the same fields).
    job: (d) => tenantJob({ ...d, payload: d.payload as TProperties } as unknown as Parameters<typeof tenantJob>[0]),
    payloadOf: (p) => ({ ...(p.input as Static<TObject<P>>), tenantId: p.tenantId! }),
    submitPayload: (p) => ({ tenantId: p.tenantId, workflowId: p.workflowId, input: p.input }),
    input,
  })
  const root = tenantJob<P, D, { results: Record<string, unknown> }>({
    payload: def.payload,
    maxRetries: 0,
    async process(ctx) {
      return { results: await resultsBefore(ctx.job) }
    },
  })
  return { ...jobs, [name]: { ...root, workflow: info } } as never
}

/** The same for platform work (records in sys_jobs; steps get the system job context). `payload` is its TypeBox object schema. */
export function systemWorkflow<const N extends string, S extends TObject, const Step extends string, D = unknown>(
  name: N,
  def: { payload: S; steps: readonly (WorkflowStep<Static<S>, SystemStepContext<D>> & { name: Step })[]; compensationRetries?: number },
): WorkflowRegistry<N, Step, SystemJobDefinition<S, D, { results: Record<string, unknown> }>, SystemJobDefinition> {
  const { jobs, info } = flowJobs<Static<S>, SystemStepContext<D>>(name, def.steps, def, {
    job: (d) =>
      systemJob({ ...d, payload: Type.Object(d.payload as TProperties, { additionalProperties: false }) } as Parameters<
        typeof systemJob
      >[0]),
    payloadOf: (p) => p.input as Static<S>,
    submitPayload: (p) => ({ workflowId: p.workflowId, input: p.input }),
    input: def.payload,
  })
  const root = systemJob<S, D, { results: Record<string, unknown> }>({
    payload: def.payload,
    maxRetries: 0,
    async process(ctx) {
      return { results: await resultsBefore(ctx.job) }
    },
  })
  return { ...jobs, [name]: { ...root, workflow: info } } as never
}
