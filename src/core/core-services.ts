/**
 * The core's long-lived services, shared by the CLI, the HTTP app and the worker: host database,
 * Redis, the invalidation bus (the process' one pub/sub subscriber), tenant catalog (cached, invalidated
 * across processes), tenant pool manager, the provisioner
 * (which also runs the other lifecycle events), mailer, task manager and outbox. The features given
 * add their jobs (and what those jobs need) and their lifecycle steps; src/services.ts is the one call
 * that passes the kit's feature list. close() ends everything in reverse order.
 */
import type { Redis } from 'ioredis'
import { logRedisErrors, newRedisClient, reconnectBackoff } from './lib/redis.js'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { createHostDatabase, type HostDatabase } from './db/host.js'
import { createInvalidationBus, type InvalidationBus } from './lib/invalidated-cache.js'
import { type CatalogHandle, catalogChannel, createCatalog } from './tenancy/catalog.js'
import { createPoolManager } from './tenancy/pool-manager.js'
import { loadPlanIsolation } from './tenancy/plan-isolation.js'
import { createProvisioner, type Provisioner } from './tenancy/provisioning.js'
import type { PoolManager } from './tenancy/types.js'
import { createMailer, type Mailer } from './email/index.js'
import { BUILT_IN_JOBS } from './jobs/built-in.js'
import { FLEET_JOBS, provisioningJobs } from './tenancy/provisioning-jobs.js'
import { createTenantMover, MOVE_JOBS, type TenantMover } from './tenancy/move/index.js'
import { listenForServerChanges, serversChannel } from './tenancy/server-admin.js'
import type { CoreServices, Feature } from './feature.js'
import { type AssembledLifecycle, assembleLifecycle } from './tenancy/lifecycle.js'
import type { JobRegistry, JobSubmitter, KnownJobs } from './jobs/registry.js'
import { assemblePermissions, type PermissionRegistry } from './tenancy/rbac.js'
import { assembleErrorCodes, CORE_ERROR_CODES, type ErrorCodeTable } from './lib/error-codes.js'
import { createOutbox, type Outbox } from './jobs/outbox.js'
import { createDomainEvents, type DomainEvents } from './events/domain-events.js'
import { createTaskManager, type TaskManager } from './jobs/task-manager.js'
import { createServiceMetrics, registerQueueDepth, type ServiceMetrics } from './lib/service-metrics.js'
import { CORE_SCHEDULES, HOUSEKEEPING_JOBS } from './housekeeping/index.js'
import { type Schedule, validateSchedules } from './jobs/schedules.js'

export interface Services {
  config: Config
  logger: Logger
  host: HostDatabase
  redis: Redis
  /** The process' one pub/sub subscriber connection, shared by every cache invalidated across processes. */
  invalidations: InvalidationBus
  catalog: CatalogHandle
  pools: PoolManager
  provisioner: Provisioner
  /** Moves tenants between isolation modes (tenancy/move): start, run, queue (`tenants.move`), abort. */
  mover: TenantMover
  /** Every tenant lifecycle event with its steps in order, the features' included. */
  lifecycle: AssembledLifecycle
  mailer: Mailer
  /** Every job this process knows: the core's and the features' (the worker consumes them). */
  jobs: JobRegistry
  /** Every resource × action the features declare: what a per-user grant may name. */
  permissions: PermissionRegistry
  /** Every error code the API can answer, with its status and meaning: the core's and the features' (OpenAPI `x-error-codes`). */
  errorCodes: ErrorCodeTable
  /** Every recurring job: the core's CORE_SCHEDULES and the features' (collectSchedules); the worker installs them. */
  schedules: readonly Schedule[]
  /** Everything job processors find in ctx.deps: the core's services and what each feature adds. */
  jobDeps: Record<string, unknown>
  /** Submit and inspect background jobs; the worker process consumes them. */
  tasks: TaskManager<KnownJobs>
  /**
   * Jobs written in the same transaction as the change that asks for them (jobs/outbox.ts), submitted
   * after commit and by a periodic sweep: a Redis outage delays them, never loses them. The API and the
   * worker start the sweep (startSweeper); the CLI doesn't.
   */
  outbox: Outbox
  /** Domain events: features publish what happened in a tenant after commit; features' `listen` hooks receive them. */
  events: DomainEvents
  /** Provisioning, job and queue metrics of this process (lib/service-metrics.ts); the app serves them on /metrics. */
  metrics: ServiceMetrics
  close(): Promise<void>
}

export interface ServiceOptions {
  /** The features whose jobs, job dependencies and lifecycle steps join the core's (src/features/index.ts). */
  features?: readonly Feature[]
  /** Tenant migrations folder (tests and benchmarks use temporary copies). */
  tenantMigrationsFolder?: string
  /** Share an existing host database / Redis client (the HTTP app has its own); they are then not closed here. */
  host?: HostDatabase
  redis?: Redis
  /** Job definitions added to (or overriding) the features'. */
  jobs?: JobRegistry
  /** Defaults to a mailer built from config.smtp (a log transport without SMTP_HOST). */
  mailer?: Mailer
}

/** The one list of scheduled work: the core's schedules, then each feature's, in feature order. */
export function collectSchedules(features: readonly Feature[]): readonly Schedule[] {
  return [...CORE_SCHEDULES, ...features.flatMap((f) => f.schedules ?? [])]
}

export function createCoreServices(config: Config, logger: Logger, opts: ServiceOptions = {}): Services {
  const features = opts.features ?? []
  if (!config.databaseUrl) throw new Error('createServices needs config.databaseUrl (start the embedded Postgres first in development)')
  const host = opts.host ?? createHostDatabase(config.databaseUrl, config.pool.hostMax, config.pool)
  // Worker and CLI: no command timeout (long queue scripts are fine off the request path), but a capped
  // reconnect backoff and errors logged through pino.
  const redis = opts.redis ?? newRedisClient(config, { retryStrategy: reconnectBackoff(config.redisTimeouts.maxReconnectDelayMs) })
  if (!opts.redis) logRedisErrors(redis, logger, 'services')
  const pools = createPoolManager({
    maxPerTenant: config.pool.maxPerTenant,
    maxTenants: config.pool.maxTenants,
    idleTimeoutS: config.pool.idleTimeoutS,
    connectionBudget: config.pool.connectionBudget,
    // Each database server's own budget (core_db_servers.max_connections), as the registry last read it.
    serverBudget: (server) => provisioner.servers.budgetOf(server),
    acquireTimeoutMs: config.pool.acquireTimeoutMs,
    sharedMax: config.pool.sharedMax,
    connectOptions: config.pool,
    poolerPreparedStatements: config.pool.poolerPreparedStatements,
    logger,
  })
  const invalidations = createInvalidationBus(redis, logger)
  const catalog = createCatalog({
    host,
    redis,
    bus: invalidations,
    keys: config.encryptionKeys,
    ttlS: config.pool.catalogTtlS,
    channel: catalogChannel(config.redisPrefix),
    logger,
    // Another process changed this tenant (migrated, suspended…): close our pool, reopen on next use.
    onRemoteInvalidate: (tenantId, hint) => {
      pools.evict(tenantId, { readOnly: hint.moving === true }).catch((err) => logger.warn({ err, tenantId }, 'closing a tenant pool after a catalog change failed'))
    },
  })
  const metrics = createServiceMetrics()
  const mailer = opts.mailer ?? createMailer(config.smtp, logger, { defaultVariables: { app_name: config.appName } })
  const lifecycle = assembleLifecycle(features.flatMap((f) => f.lifecycle ?? []))
  // Lifecycle steps (the welcome email) and features submit through the task manager, whose processors
  // need the provisioner: bound late (tasks is assigned below, before anything can run).
  const lateTasks: JobSubmitter = {
    submit: (name, payload, submitOpts) => (tasks as unknown as JobSubmitter).submit(name, payload, submitOpts),
    submitMany: (name, payloads, submitOpts) => (tasks as unknown as JobSubmitter).submitMany(name, payloads, submitOpts),
    submitWorkflow: (name, payload, submitOpts) => (tasks as unknown as JobSubmitter).submitWorkflow(name, payload, submitOpts),
  }
  const provisioner = createProvisioner({
    host,
    catalog,
    pools,
    config,
    logger,
    lifecycle,
    migrationsFolder: opts.tenantMigrationsFolder,
    planIsolation: loadPlanIsolation(),
    tasks: lateTasks,
    metrics,
  })
  const mover = createTenantMover({
    config,
    host,
    catalog,
    pools,
    provisioner,
    tasks: lateTasks,
    logger,
  })
  // Read the servers' budgets now and every minute (a server added or changed elsewhere); the pool manager
  // uses POOL_CONNECTION_BUDGET for a server until then.
  const refreshServers = () =>
    provisioner.servers.refresh().catch((err: unknown) => logger.warn({ err }, 'reading the database servers failed; budgets unchanged'))
  void refreshServers()
  const serverRefresh = setInterval(refreshServers, 60_000)
  serverRefresh.unref()
  // A server removed or rerouted through a pooler by any process (server-admin.ts): close this process' pools there at once.
  const serverChanges = listenForServerChanges(invalidations, { servers: provisioner.servers, pools, catalog, logger, channel: serversChannel(config.redisPrefix) })
  const core: CoreServices = {
    config,
    logger,
    host,
    redis,
    catalog,
    pools,
    mailer,
    tasks: lateTasks,
  }

  const jobs: JobRegistry = {
    ...BUILT_IN_JOBS,
    ...provisioningJobs(lifecycle.events.created.steps),
    ...FLEET_JOBS,
    ...MOVE_JOBS,
    ...HOUSEKEEPING_JOBS,
    ...Object.assign({}, ...features.map((f) => f.jobs ?? {})),
    ...opts.jobs,
  }
  const jobDeps: Record<string, unknown> = Object.assign(
    { mailer, provisioner, mover, pools, host, config, catalog },
    ...features.map((f) => f.jobDeps?.(core) ?? {}),
  )
  const schedules = collectSchedules(features)
  validateSchedules(schedules, jobs)
  // Typed by JobTypes: every job the core and the features declare (the features given here register them).
  const tasks = createTaskManager({
    registry: jobs,
    deps: jobDeps,
    host,
    catalog,
    pools,
    redis,
    config,
    logger,
    metrics,
  }) as unknown as TaskManager<KnownJobs>
  registerQueueDepth(metrics.registry, () => tasks.queues)

  const outbox = createOutbox({ host, tasks, redis, redisPrefix: config.redisPrefix, logger })
  const events = createDomainEvents(logger)
  for (const f of features) if (f.listen) events.listen(f.listen({ ...core, outbox, invalidations }))

  let closing: Promise<void> | undefined
  return {
    config,
    logger,
    host,
    redis,
    invalidations,
    catalog,
    pools,
    provisioner,
    mover,
    lifecycle,
    mailer,
    jobs,
    permissions: assemblePermissions(features.map((f) => f.permissions ?? {})),
    errorCodes: assembleErrorCodes([CORE_ERROR_CODES, ...features.map((f) => f.errors ?? {})]),
    schedules,
    jobDeps,
    tasks,
    outbox,
    events,
    metrics,
    close() {
      closing ??= (async () => {
        clearInterval(serverRefresh)
        await serverChanges.stop()
        await outbox.close()
        await tasks.close()
        if (!opts.mailer) mailer.close()
        await mover.close()
        await provisioner.close()
        await pools.close()
        await catalog.close()
        await invalidations.close()
        if (!opts.redis) await redis.quit().catch(() => redis.disconnect())
        if (!opts.host) await host.close()
      })()
      return closing
    },
  }
}
