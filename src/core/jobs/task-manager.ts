/**
 * The task manager: the one way the kit runs background work.
 *
 *   submit(name, payload)  validate (400 INVALID_JOB_PAYLOAD naming the field), write the record
 *                          (pending), enqueue on BullMQ with the record id as job id
 *   getJob(id, scope)      the record plus BullMQ's view of the job
 *   listJobs(filter)       records of one tenant (tenant_jobs) or of the platform (sys_jobs)
 *   startWorkers(opts)     BullMQ workers running the registry's processors (processor.ts)
 *
 * The record is written before the job is enqueued, so a worker never sees a job without a record.
 */
import { FlowProducer, type FlowJob, type Job, type JobsOptions, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { logRedisErrors } from '../lib/redis.js'
import type { Logger } from 'pino'
import { uuidv7 } from 'uuidv7'
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { badRequest, notFound, unavailable } from '../lib/errors.js'
import type { Catalog, PoolManager, TenantRecord } from '../tenancy/types.js'
import { createBackgroundWrites } from './background-writes.js'
import { createEffects } from './effects.js'
import { createProcessor, errorLog, recordUnhandledFailure } from './processor.js'
import { closeWorkerConnection, createQueues, QUEUE_NAMES, type Queues, queuePrefix, workerConnection } from './queues.js'
import { type ReconcileCounts, type ReconcileLoop, type ReconcileOptions, reconcileJobRecords, startReconcileLoop } from './reconcile.js'
import { ENQUEUE_FAILED, type JobRecord, type JobStatus, type NewRecord, recordsFor, systemRecords, tenantRecords } from './records.js'
import {
  assertPayload,
  derivedJobId,
  type DepsOf,
  type JobDefinition,
  type JobRegistry,
  type JobScope,
  type JobSubmitter,
  type PayloadOf,
  type SubmitOptions,
  type SubmittedJob,
  type SubmittedWorkflow,
} from './registry.js'
import { createTenantSlots, type TenantSlots } from './tenant-slots.js'
import { isUuid } from '../lib/uuid.js'
import type { ServiceMetrics } from '../lib/service-metrics.js'

export interface TaskManagerDeps<R extends JobRegistry> {
  registry: R
  /** What the registry's processors need (e.g. { mailer, provisioner }). */
  deps: DepsOf<R>
  host: HostDatabase
  catalog: Catalog
  pools: PoolManager
  /** Producer connection for the queues and the tenant slots; not closed by the task manager. */
  redis: Redis
  config: Pick<Config, 'redisUrl' | 'redisPrefix' | 'redisCluster' | 'jobs'>
  logger: Logger
  /** A dead worker's tenant slots come back after this (default 30 s; renewed while the job runs). */
  tenantSlotLeaseMs?: number
  /** Job outcomes are counted here (services.metrics); none when absent. */
  metrics?: Pick<ServiceMetrics, 'jobOutcomes'>
  /** How long BullMQ keeps finished jobs (the records keep the history). Default: 1 day / 7 days. */
  retention?: { completedAgeS: number; failedAgeS: number }
}

export interface WorkerOptions {
  /** Queues this process consumes (default both). */
  scopes?: JobScope[]
  /** Jobs at once per queue (default config.jobs.workerConcurrency). */
  concurrency?: number
  /** A job whose worker stops renewing its lock for this long is stalled and picked up again (default 30 s). */
  lockDurationMs?: number
  /** How often workers look for stalled jobs (default 30 s). */
  stalledIntervalMs?: number
  /** Times a job may stall before it fails (default 1). */
  maxStalledCount?: number
  /** First re-queue delay of a job whose tenant is at its cap (default 100 ms, doubling per bounce). */
  tenantCapDelayMs?: number
  /** How often these workers run the reconcile sweep (default config.jobs.reconcileIntervalMs; 0: never). */
  reconcileIntervalMs?: number
}

export interface JobWorkers {
  workers: Worker[]
  /** Resolves when every worker is connected and consuming. */
  ready(): Promise<void>
  /**
   * Resolves once the records of the jobs finished so far are written: a job returns without waiting for
   * its "completed" write (processor.ts), so a reader may see it running for a few ms after BullMQ
   * completed it. close() waits for this too.
   */
  settled(): Promise<void>
  /**
   * Stop taking jobs and wait for running ones, at most `timeoutMs`; then drop the workers' Redis
   * connections, leaving jobs still running to the stalled check of another worker (the worker process
   * exits right after). The finished jobs' record writes get what is left of `timeoutMs` (at least 1 s) to
   * land. Resolves with whether it drained in time.
   */
  close(timeoutMs?: number): Promise<boolean>
}

export type JobView = JobRecord & {
  /** BullMQ's state: waiting, delayed, active, completed, failed… or 'unknown' once BullMQ removed it. */
  queueState: string
}

export interface ListJobsFilter {
  /** Jobs of this tenant (its tenant_jobs); without it, the platform's sys_jobs. */
  tenantId?: string
  /** 'system' with a tenantId: the platform's sys_jobs recorded for that tenant, not its tenant_jobs. */
  scope?: JobScope
  type?: string
  status?: JobStatus
  /** Created at or after / before. */
  since?: Date
  until?: Date
  /** Default 50, at most 1000. */
  limit?: number
  /** Cursor: the last id of the previous page. */
  before?: string
}

export type { SubmittedWorkflow }

export interface TaskManager<R extends JobRegistry> {
  readonly registry: R
  readonly queues: Queues
  readonly slots: TenantSlots
  submit<N extends keyof R & string>(name: N, payload: PayloadOf<R[N]>, opts?: SubmitOptions): Promise<SubmittedJob>
  submitMany<N extends keyof R & string>(name: N, payloads: PayloadOf<R[N]>[], opts?: { ids?: string[] }): Promise<SubmittedJob[]>
  /**
   * Start a workflow (src/core/jobs/workflows.ts) as one BullMQ flow: a record per step and for the workflow's own
   * job (its id is the workflow id, its record the workflow's status), then the flow. 400 UNKNOWN_JOB_TYPE when
   * `name` is not a workflow; the same `id` again is a no-op once started.
   */
  submitWorkflow<N extends keyof R & string>(name: N, payload: PayloadOf<R[N]>, opts?: { id?: string }): Promise<SubmittedWorkflow>
  /** 404 JOB_NOT_FOUND unless the job exists in that scope. */
  getJob(id: string, scope: 'system' | { tenantId: string }): Promise<JobView>
  listJobs(filter?: ListJobsFilter): Promise<JobRecord[]>
  /** One reconcile sweep now (reconcile.ts); workers also run it periodically. */
  reconcile(opts?: Partial<ReconcileOptions>): Promise<ReconcileCounts>
  startWorkers(opts?: WorkerOptions): JobWorkers
  /** Closes workers started here and the queues. */
  close(): Promise<void>
}

export function createTaskManager<R extends JobRegistry>(d: TaskManagerDeps<R>): TaskManager<R> {
  const { registry, host, catalog, pools, redis, config, logger } = d
  const prefix = config.redisPrefix
  const queues = createQueues(redis, config, logger)
  const slots = createTenantSlots(redis, { prefix, cap: config.jobs.tenantConcurrency, leaseMs: d.tenantSlotLeaseMs ?? 30_000 })
  const retention = d.retention ?? { completedAgeS: 86_400, failedAgeS: 7 * 86_400 }
  const started = new Set<JobWorkers>()
  const writes = createBackgroundWrites({ logger })
  const effects = createEffects(host.sql, writes)
  let flows: FlowProducer | undefined

  const definition = (name: string): JobDefinition => {
    const def = Object.hasOwn(registry, name) ? registry[name] : undefined
    if (!def) throw badRequest('UNKNOWN_JOB_TYPE', `Unknown job type "${name}"`)
    return def
  }

  async function tenantOr404(tenantId: string): Promise<TenantRecord> {
    const tenant = isUuid(tenantId) ? await catalog.get(tenantId) : undefined
    if (!tenant) throw notFound('TENANT_NOT_FOUND', `Tenant ${tenantId} not found`)
    return tenant
  }

  const jobOptions = (def: JobDefinition, id: string, delayMs?: number): JobsOptions => ({
    jobId: id,
    attempts: def.maxRetries + 1,
    backoff: { type: def.backoff.type, delay: def.backoff.delayMs },
    ...(delayMs ? { delay: delayMs } : {}),
    removeOnComplete: { age: retention.completedAgeS },
    removeOnFail: { age: retention.failedAgeS },
  })

  async function submitMany(name: string, payloads: unknown[], opts: { ids?: string[]; delayMs?: number } = {}): Promise<SubmittedJob[]> {
    const def = definition(name)
    for (const payload of payloads) assertPayload(name, def, payload)
    const ids = opts.ids ?? payloads.map(() => uuidv7())
    if (ids.length !== payloads.length || ids.some((id) => !isUuid(id)))
      throw badRequest('INVALID_JOB_ID', 'job ids must be UUIDs, one per payload')
    const tenantOf = (payload: unknown) => (payload as { tenantId?: string }).tenantId
    const jobs: SubmittedJob[] = payloads.map((payload, i) => ({ id: ids[i]!, name, scope: def.scope, tenantId: tenantOf(payload) }))
    const rows: NewRecord[] = payloads.map((payload, i) => ({
      id: ids[i]!,
      jobType: name,
      payload,
      maxRetries: def.maxRetries,
      tenantId: tenantOf(payload) ?? null,
    }))

    const enqueue = await writeRecords(def.scope, rows)

    const toAdd = payloads.flatMap((data, i) =>
      enqueue.has(ids[i]!) ? [{ name, data, opts: jobOptions(def, ids[i]!, opts.delayMs) }] : [],
    )
    if (toAdd.length > 0) {
      try {
        confirmAdded(await queues.byScope(def.scope).addBulk(toAdd), toAdd.map((a) => a.opts.jobId))
      } catch (err) {
        logger.error({ err, job: name, count: toAdd.length }, 'enqueueing jobs failed; records marked failed')
        await markEnqueueFailed(def, rows, enqueue, err).catch(() => {})
        // The cause stays on the error (never in the response) for callers that record it, e.g. a tenant's provision_error.
        throw Object.assign(unavailable('QUEUE_UNAVAILABLE', 'The job queue is unavailable; try again later'), { cause: err })
      }
    }
    return jobs
  }

  /**
   * Records first. An id that already has a record is enqueued again only while still pending or failed
   * at enqueue (an earlier submit died before reaching Redis, or Redis refused it: the outbox's sweep
   * submits it again once Redis is back); once it ran, submitting it again is a no-op. Returns the ids to enqueue.
   */
  async function writeRecords(scope: JobScope, rows: NewRecord[]): Promise<Set<string>> {
    const enqueue = new Set<string>()
    const store = recordsFor(scope)
    const write = async (sql: HostDatabase['sql'], group: NewRecord[]) => {
      const inserted = await store.insert(sql, group)
      for (const id of inserted) enqueue.add(id)
      const existing = group.filter((r) => !inserted.has(r.id)).map((r) => r.id)
      if (existing.length > 0) for (const id of await store.resubmittable(sql, existing)) enqueue.add(id)
    }
    if (scope === 'system') {
      await write(host.sql, rows)
    } else {
      const byTenant = new Map<string, NewRecord[]>()
      for (const row of rows) {
        const group = byTenant.get(row.tenantId!)
        if (group) group.push(row)
        else byTenant.set(row.tenantId!, [row])
      }
      for (const [tenantId, group] of byTenant) {
        const tenant = await tenantOr404(tenantId)
        await pools.withTenant(tenant, (db) => write(db.$client, group))
      }
    }
    return enqueue
  }

  async function submitWorkflow(name: string, payload: unknown, opts: { id?: string } = {}) {
    const root = definition(name)
    const info = root.workflow
    if (!info) throw badRequest('UNKNOWN_JOB_TYPE', `"${name}" is not a workflow`)
    assertPayload(name, root, payload)
    const id = opts.id ?? uuidv7()
    if (!isUuid(id)) throw badRequest('INVALID_JOB_ID', 'a workflow id must be a UUID')
    const { tenantId, ...input } = payload as { tenantId?: string } & Record<string, unknown>
    const stepData = root.scope === 'tenant' ? { tenantId, workflowId: id, input } : { workflowId: id, input: payload }
    const steps = info.steps.map((step) => ({ name: step, id: derivedJobId(id, `step:${step}`), def: definition(step) }))
    for (const step of steps) assertPayload(step.name, step.def, stepData)
    const row = (jobId: string, jobType: string, data: unknown, def: JobDefinition): NewRecord => ({
      id: jobId,
      jobType,
      payload: data,
      maxRetries: def.maxRetries,
      tenantId: tenantId ?? null,
    })
    const rows = [row(id, name, payload, root), ...steps.map((s) => row(s.id, s.name, stepData, s.def))]
    const enqueue = await writeRecords(root.scope, rows)
    const submitted = { id, name, scope: root.scope, tenantId, steps: steps.map(({ name, id }) => ({ name, id })) }
    if (!enqueue.has(id)) return submitted
    // The chain: the workflow's job waits on the last step, which waits on the one before… so the first step runs
    // first and each step's only child is the step before it (its result is that child's return value).
    const queueName = QUEUE_NAMES[root.scope]
    // Every node names its queue's prefix (a node does not inherit its parent's): on a cluster the flow's jobs
    // are added in one MULTI, all in that queue's slot.
    const nodePrefix = queuePrefix(config, queueName)
    let child: FlowJob | undefined
    for (const s of steps) {
      child = {
        name: s.name,
        queueName,
        prefix: nodePrefix,
        data: stepData,
        opts: { ...jobOptions(s.def, s.id), failParentOnFailure: true },
        ...(child ? { children: [child] } : {}),
      }
    }
    flows ??= new FlowProducer({ connection: redis, prefix })
    try {
      const added = await flows.add({ name, queueName, prefix: nodePrefix, data: payload, opts: jobOptions(root, id), children: [child!] })
      confirmAdded([added.job], [id])
    } catch (err) {
      logger.error({ err, job: name, id }, 'enqueueing a workflow failed; records marked failed')
      await markEnqueueFailed(root, rows, new Set(rows.map((r) => r.id)), err).catch(() => {})
      throw Object.assign(unavailable('QUEUE_UNAVAILABLE', 'The job queue is unavailable; try again later'), { cause: err })
    }
    return submitted
  }

  /**
   * Every job asked for came back with its id. BullMQ reads the ids from ioredis' pipeline results without
   * checking their count: on a Redis Cluster, a pipeline retried after an ASK redirection while the queue's
   * slot was being resharded resolved with no result at all (ioredis 6.0.0: `[]` for `asking` + `evalsha`),
   * so addBulk returned a job without an id that was never added (test/faults/redis-cluster-reshard.test.ts
   * saw it in about one move in five). Such an add is refused like any other enqueue failure.
   */
  function confirmAdded(added: readonly { id?: string | undefined }[], ids: readonly (string | undefined)[]) {
    const lost = ids.filter((id, i) => added[i]?.id !== id)
    if (lost.length > 0) throw new Error(`the queue did not confirm job(s) ${lost.join(', ')}`)
  }

  async function markEnqueueFailed(def: JobDefinition, rows: NewRecord[], ids: Set<string>, err: unknown) {
    const store = recordsFor(def.scope)
    const log = `${ENQUEUE_FAILED}${errorLog(err)}`
    for (const row of rows.filter((r) => ids.has(r.id))) {
      if (def.scope === 'system') await store.failed(host.sql, row.id, 0, log)
      else await pools.withTenant(await tenantOr404(row.tenantId!), (db) => store.failed(db.$client, row.id, 0, log))
    }
  }

  async function submit(name: string, payload: unknown, opts: SubmitOptions = {}): Promise<SubmittedJob> {
    const [job] = await submitMany(name, [payload], { ...(opts.id ? { ids: [opts.id] } : {}), delayMs: opts.delayMs })
    return job!
  }

  const submitter: JobSubmitter = { submit, submitMany, submitWorkflow }

  async function getJob(id: string, scope: 'system' | { tenantId: string }): Promise<JobView> {
    const missing = () => notFound('JOB_NOT_FOUND', `Job ${id} not found`)
    if (!isUuid(id)) throw missing()
    let record: JobRecord | undefined
    if (scope === 'system') {
      record = await systemRecords.get(host.sql, id)
    } else {
      const tenant = await tenantOr404(scope.tenantId)
      record = await pools.withTenant(tenant, (db) => tenantRecords.get(db.$client, id, tenant.id))
    }
    if (!record) throw missing()
    const queueState = await queues.byScope(record.scope).getJobState(id)
    return { ...record, queueState }
  }

  async function listJobs(filter: ListJobsFilter = {}): Promise<JobRecord[]> {
    if (filter.before !== undefined && !isUuid(filter.before)) throw badRequest('INVALID_CURSOR', 'before must be a job id')
    const f = {
      type: filter.type,
      status: filter.status,
      limit: filter.limit ?? 50,
      before: filter.before,
      since: filter.since,
      until: filter.until,
    }
    if (filter.scope === 'system') return systemRecords.list(host.sql, { ...f, tenantId: filter.tenantId })
    if (filter.tenantId === undefined) return systemRecords.list(host.sql, f)
    const tenant = await tenantOr404(filter.tenantId)
    return pools.withTenant(tenant, (db) => tenantRecords.list(db.$client, f, tenant.id))
  }

  const reconcileDeps = {
    registry,
    queues,
    hostSql: host.sql,
    catalog,
    pools,
    logger,
    jobOptions: (def: JobDefinition, id: string) => jobOptions(def, id),
  }
  const reconcile = (opts: Partial<ReconcileOptions> = {}) =>
    reconcileJobRecords(reconcileDeps, { olderThanMs: config.jobs.reconcileAfterMs, ...opts })

  function startWorkers(opts: WorkerOptions = {}): JobWorkers {
    const processorDeps = {
      writes,
      effects,
      registry,
      deps: d.deps,
      hostSql: host.sql,
      catalog,
      pools,
      slots,
      submitter,
      logger,
      tenantCapDelayMs: opts.tenantCapDelayMs ?? 100,
      jobOutcomes: d.metrics?.jobOutcomes,
    }
    const processor = createProcessor(processorDeps)
    const connections: ReturnType<typeof workerConnection>[] = []
    const workers = (opts.scopes ?? (['system', 'tenant'] as const)).map((scope) => {
      const connection = workerConnection(config)
      connections.push(connection)
      const worker = new Worker(QUEUE_NAMES[scope], processor, {
        connection,
        prefix: queuePrefix(config, QUEUE_NAMES[scope]),
        concurrency: opts.concurrency ?? config.jobs.workerConcurrency,
        lockDuration: opts.lockDurationMs ?? 30_000,
        stalledInterval: opts.stalledIntervalMs ?? 30_000,
        maxStalledCount: opts.maxStalledCount ?? 1,
      })
      worker.on('failed', (job: Job | undefined, err: Error) => {
        if (job) void recordUnhandledFailure(job, err, processorDeps)
      })
      // Mostly Redis being down (every reconnect attempt): one line per 10 s, not one per attempt.
      logRedisErrors(worker, logger, `worker ${scope}`)
      return worker
    })
    const intervalMs = opts.reconcileIntervalMs ?? config.jobs.reconcileIntervalMs
    const loop: ReconcileLoop | undefined =
      intervalMs > 0
        ? startReconcileLoop(
            { ...reconcileDeps, redis, lockKey: `${prefix}:jobs:reconcile-lock` },
            { intervalMs, olderThanMs: config.jobs.reconcileAfterMs },
          )
        : undefined

    let closing: Promise<boolean> | undefined
    const handle: JobWorkers = {
      workers,
      async ready() {
        await Promise.all(workers.map((w) => w.waitUntilReady()))
      },
      settled: () => processor.settled(),
      close(timeoutMs = config.jobs.shutdownTimeoutMs) {
        closing ??= (async () => {
          const deadline = Date.now() + timeoutMs
          await loop?.stop()
          let timer: NodeJS.Timeout | undefined
          const timedOut = new Promise<false>((resolve) => {
            timer = setTimeout(() => resolve(false), timeoutMs)
          })
          const drained = await Promise.race([Promise.all(workers.map((w) => w.close())).then(() => true as const), timedOut])
          clearTimeout(timer)
          if (!drained) {
            // BullMQ cannot turn a graceful close into a forced one, so cut its connections instead: the
            // running jobs' locks stop being renewed and the stalled check hands them to another worker.
            logger.warn({ timeoutMs }, 'jobs still running at the shutdown deadline; leaving them to the stalled check')
            await Promise.all(workers.map((w) => w.disconnect().catch(() => {})))
          }
          // The "completed" writes the finished jobs left behind. One still failing by then stays with the
          // background retries until tasks.close(); one lost with the process leaves its record running
          // behind BullMQ's completed job, which the reconcile sweep completes.
          const writesLanded = await Promise.race([
            processor.settled().then(() => true),
            new Promise<false>((resolve) => {
              timer = setTimeout(() => resolve(false), Math.max(deadline - Date.now(), 1000))
            }),
          ])
          clearTimeout(timer)
          if (!writesLanded) logger.warn('job record writes still unwritten at shutdown; the reconcile sweep will repair them')
          for (const c of connections) closeWorkerConnection(c)
          started.delete(handle)
          return drained
        })()
        return closing
      },
    }
    started.add(handle)
    return handle
  }

  return {
    registry,
    queues,
    slots,
    submit: submit as TaskManager<R>['submit'],
    submitMany: submitMany as TaskManager<R>['submitMany'],
    submitWorkflow: submitWorkflow as TaskManager<R>['submitWorkflow'],
    getJob,
    listJobs,
    reconcile,
    startWorkers,
    async close() {
      await Promise.all([...started].map((w) => w.close()))
      writes.close()
      await flows?.close()
      await queues.close()
    },
  }
}
