/**
 * Job types: a registry maps each job name to its scope, TypeBox payload schema, retry policy and
 * processor. The task manager validates payloads against the schema when a job is submitted and again
 * when it is processed, so a job whose payload is wrong never runs.
 *
 * Tenant jobs always carry `tenantId` in their payload (tenantJob() adds it to the schema); the worker
 * resolves the tenant from it and hands the processor that tenant's database. Nothing else tells a
 * processor which tenant it is working for.
 */
import { createHash } from 'node:crypto'
import type { Job } from 'bullmq'
import type { Logger } from 'pino'
import { type Static, type TObject, type TProperties, type TSchema, type TString, Type } from 'typebox'
import { Compile } from 'typebox/compile'
import { badRequest } from '../lib/errors.js'
import type { TenantDb, TenantRecord } from '../tenancy/types.js'
import { Uuid } from '../lib/schemas.js'

export type JobScope = 'system' | 'tenant'

/** BullMQ backoff: exponential waits delayMs, 2×, 4×… between attempts. */
export interface Backoff {
  type: 'exponential' | 'fixed'
  delayMs: number
}

export const DEFAULT_MAX_RETRIES = 3
export const DEFAULT_BACKOFF: Backoff = { type: 'exponential', delayMs: 1000 }

export interface SubmitOptions {
  /**
   * Record id and BullMQ job id (a UUID). Submitting the same id again is a no-op once the job has
   * started, so fan-outs and pipeline steps use ids derived from their parent (derivedJobId).
   */
  id?: string
  /** Run no earlier than this many ms from now. */
  delayMs?: number
}

export interface SubmittedJob {
  id: string
  name: string
  scope: JobScope
  tenantId: string | undefined
}

export interface SubmittedWorkflow extends SubmittedJob {
  /** The step jobs' ids, in order (their records carry payload.workflowId = id). */
  steps: { name: string; id: string }[]
}

/** What a processor may use to enqueue more work (validated like any other submit). */
export interface JobSubmitter {
  submit(name: string, payload: unknown, opts?: SubmitOptions): Promise<SubmittedJob>
  submitMany(name: string, payloads: unknown[], opts?: { ids?: string[] }): Promise<SubmittedJob[]>
  /** Start a workflow (workflows.ts); from a job, give an id derived from the job's (derivedJobId) so a re-run starts none twice. */
  submitWorkflow(name: string, payload: unknown, opts?: { id?: string }): Promise<SubmittedWorkflow>
}

export interface JobContext<D = unknown> extends JobSubmitter {
  job: Job
  /** The record id (= BullMQ job id). */
  jobId: string
  /** 1 for the first attempt, 2 for the first retry… */
  attempt: number
  logger: Logger
  /** The services the registry's processors need (mailer, provisioner…), given to createTaskManager. */
  deps: D
  /**
   * Run a side effect outside our databases (an SMTP send) at most once for this job id, however often
   * BullMQ runs the job; a re-run gets the first run's result back (src/core/jobs/effects.ts). The result must
   * be JSON. `effect` names the effect within the job ('smtp').
   */
  once<T>(effect: string, run: () => Promise<T>): Promise<T>
}

export interface TenantJobContext<D = unknown> extends JobContext<D> {
  tenant: TenantRecord
  /** The tenant's database, leased from the pool manager for the duration of this job only. */
  db: TenantDb
}

/** A job to submit when this one succeeds. */
export interface FollowUp {
  name: string
  payload: unknown
}

interface CommonDefinition<S extends TSchema, R> {
  payload: S
  /** Retries after the first attempt (BullMQ attempts = maxRetries + 1). */
  maxRetries: number
  backoff: Backoff
  /** Errors a retry cannot fix: the job fails at once (e.g. SMTP 550, an unknown template). */
  permanent?: (err: unknown) => boolean
  /**
   * Jobs to submit when this one succeeds: a job name (same payload) or a function of payload and result.
   * They are submitted with ids derived from this job's id before it is marked completed, so a crash in
   * between re-submits the same ids (no-ops) rather than new jobs.
   */
  next?: string | ((payload: Static<S>, result: R) => FollowUp[])
  /** Set on a workflow's own job (workflows.ts): its step jobs in order and its compensation job; `tasks.submitWorkflow` reads it. */
  workflow?: { steps: readonly string[]; compensate: string }
}

export interface SystemJobDefinition<S extends TSchema = TSchema, D = unknown, R = unknown> extends CommonDefinition<S, R> {
  scope: 'system'
  process(ctx: JobContext<D>, payload: Static<S>): Promise<R>
}

export interface TenantJobDefinition<S extends TSchema = TSchema, D = unknown, R = unknown> extends CommonDefinition<S, R> {
  scope: 'tenant'
  process(ctx: TenantJobContext<D>, payload: Static<S>): Promise<R>
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds definitions of every payload, deps and result type
export type JobDefinition = SystemJobDefinition<any, any, any> | TenantJobDefinition<any, any, any>
export type JobRegistry = Record<string, JobDefinition>

/**
 * Every job name the program knows, with its definition, so `services.tasks.submit(name, payload)` is
 * type-checked: an unknown name or a wrong payload is a compile error. Core jobs register here from
 * their own modules; a feature registers its jobs next to their definitions, in one line:
 *
 *   declare module '../../core/jobs/registry.js' { interface JobTypes extends Jobs<typeof MY_JOBS> {} }
 *
 * and lists them in its manifest (`jobs: MY_JOBS`), which is what makes the API and the worker run them.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging (core job modules and features)
export interface JobTypes {}
/** A registry's own type, for `interface JobTypes extends Jobs<typeof MY_JOBS> {}`. */
export type Jobs<R extends JobRegistry> = { [K in keyof R]: R[K] }
/** JobTypes as a registry type (a mapped type, so it satisfies JobRegistry's index signature). */
export type KnownJobs = { [K in keyof JobTypes]: JobTypes[K] }

export type PayloadOf<D extends JobDefinition> = Static<D['payload']>

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never
type DepsOfDefinition<T> = T extends { process(ctx: infer C, ...args: never[]): unknown }
  ? C extends { deps: infer D }
    ? D
    : never
  : never
/** Everything the registry's processors need from `deps`. */
export type DepsOf<R extends JobRegistry> = UnionToIntersection<{ [K in keyof R]: DepsOfDefinition<R[K]> }[keyof R]>

type Defaults = 'scope' | 'maxRetries' | 'backoff'
type Optional<T extends { maxRetries: number; backoff: Backoff }> = Omit<T, Defaults> & Partial<Pick<T, 'maxRetries' | 'backoff'>>

export function systemJob<S extends TSchema, D = unknown, R = unknown>(
  def: Optional<SystemJobDefinition<S, D, R>>,
): SystemJobDefinition<S, D, R> {
  return { maxRetries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF, ...def, scope: 'system' }
}

export const TenantIdSchema = Uuid
export type TenantPayload<P extends TProperties> = TObject<{ tenantId: TString } & P>

/** A tenant job: `payload` lists its own fields; `tenantId` is added (and required) for every tenant job. */
export function tenantJob<P extends TProperties, D = unknown, R = unknown>(
  def: Omit<Optional<TenantJobDefinition<TenantPayload<P>, D, R>>, 'payload'> & { payload: P },
): TenantJobDefinition<TenantPayload<P>, D, R> {
  const payload = Type.Object({ tenantId: TenantIdSchema, ...def.payload }, { additionalProperties: false }) as TenantPayload<P>
  return { maxRetries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF, ...def, payload, scope: 'tenant' }
}

/**
 * A pipeline of system jobs, one per step, each submitting the next when it succeeds: `${name}.${step}`.
 * Every step gets the same payload; each step must be idempotent (a step may run again after a crash).
 * Example: pipeline('tenant.provision', TenantIdPayload, LIFECYCLE.created.steps.map((s) => [s, (ctx, p) => ctx.deps.provisioner.steps[s](p.tenantId)])).
 */
export function pipeline<N extends string, Step extends string, S extends TSchema, D = unknown>(
  name: N,
  payload: S,
  steps: readonly (readonly [step: Step, run: (ctx: JobContext<D>, payload: Static<S>) => Promise<unknown>])[],
  policy: Partial<Pick<CommonDefinition<S, unknown>, 'maxRetries' | 'backoff' | 'permanent'>> & {
    /** A step whose result says so ends the pipeline there (e.g. the work was already done): no next step. */
    finished?: (result: unknown) => boolean
  } = {},
): Record<`${N}.${Step}`, SystemJobDefinition<S, D, unknown>> {
  const { finished, ...retryPolicy } = policy
  const jobs: Record<string, SystemJobDefinition<S, D, unknown>> = {}
  steps.forEach(([step, run], i) => {
    const next = steps[i + 1]
    const nextName = next ? `${name}.${next[0]}` : undefined
    jobs[`${name}.${step}`] = systemJob<S, D, unknown>({
      ...retryPolicy,
      payload,
      process: run,
      ...(nextName
        ? { next: finished ? (p: Static<S>, result: unknown) => (finished(result) ? [] : [{ name: nextName, payload: p }]) : nextName }
        : {}),
    })
  })
  return jobs as Record<`${N}.${Step}`, SystemJobDefinition<S, D, unknown>>
}

/** The first job name of a pipeline (submit it to start the pipeline). */
export const pipelineStart = (name: string, firstStep: string) => `${name}.${firstStep}`

/**
 * A stable UUID (version 8 layout) derived from a parent job id and a key: the id of a fan-out child or
 * a follow-up step, so re-running the parent re-submits the same ids.
 */
export function derivedJobId(parentId: string, key: string | number): string {
  const h = createHash('sha256').update(`${parentId}:${key}`).digest('hex')
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

// Compiled once per schema: submit and processing both validate every payload.
const validators = new WeakMap<TSchema, ReturnType<typeof Compile>>()
function validatorFor(schema: TSchema) {
  let v = validators.get(schema)
  if (!v) {
    v = Compile(schema)
    validators.set(schema, v)
  }
  return v
}

/** Human-readable problems with a payload, naming each field, e.g. `/to must match format "email"`. */
export function payloadProblems(schema: TSchema, payload: unknown): string[] {
  const v = validatorFor(schema)
  if (v.Check(payload)) return []
  const problems: string[] = []
  for (const e of v.Errors(payload)) {
    const at = e.instancePath || ''
    const params = e.params as { requiredProperties?: string[]; additionalProperties?: string[] }
    if (e.keyword === 'required' && params.requiredProperties) {
      for (const p of params.requiredProperties) problems.push(`${at}/${p} is required`)
    } else if (e.keyword === 'additionalProperties' && params.additionalProperties) {
      for (const p of params.additionalProperties) problems.push(`${at}/${p} is not allowed`)
    } else if (e.keyword !== 'boolean') {
      // 'boolean' is TypeBox repeating an additionalProperties violation at the property's own path.
      problems.push(`${at || '/'} ${e.message}`)
    }
  }
  return [...new Set(problems)]
}

/** 400 INVALID_JOB_PAYLOAD naming the bad fields, unless the payload matches the job's schema. */
export function assertPayload(name: string, def: JobDefinition, payload: unknown): void {
  const problems = payloadProblems(def.payload, payload)
  if (problems.length === 0) return
  throw badRequest('INVALID_JOB_PAYLOAD', `Invalid payload for job "${name}": ${problems.slice(0, 5).join('; ')}`, { job: name, problems })
}
