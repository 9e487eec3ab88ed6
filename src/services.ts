/**
 * The one wiring of the kit's long-lived services, shared by the CLI, the HTTP app and the worker:
 * host database, Redis, the invalidation bus (the process' one pub/sub subscriber), tenant catalog (cached,
 * invalidated across processes), tenant pool manager and
 * the provisioner (which also runs the other lifecycle events). close() ends them in reverse order.
 */
import { Redis } from 'ioredis'
import { createInvalidationBus, type InvalidationBus } from './core/lib/invalidated-cache.js'
import { logRedisErrors, reconnectBackoff } from './core/lib/redis.js'
import type { Logger } from 'pino'
import type { Config } from './core/config.js'
import { createHostDatabase, type HostDatabase } from './core/db/host.js'
import { type CatalogHandle, catalogChannel, createCatalog } from './core/tenancy/catalog.js'
import { createPoolManager } from './core/tenancy/pool-manager.js'
import { createProvisioner, type Provisioner } from './core/tenancy/provisioning.js'
import type { PoolManager } from './core/tenancy/types.js'
import { createMailer, type Mailer } from './core/email/index.js'
import { ACCOUNT_JOBS } from './features/auth/jobs.js'
import { BILLING_JOBS } from './features/billing/jobs.js'
import { BUILT_IN_JOBS } from './core/jobs/built-in.js'
import { FLEET_JOBS, PROVISIONING_JOBS } from './core/tenancy/provisioning-jobs.js'
import type { JobRegistry } from './core/jobs/registry.js'
import { createOutbox, type Outbox } from './core/jobs/outbox.js'
import { createTaskManager, type TaskManager } from './core/jobs/task-manager.js'

/** Every job the kit defines; adopters add theirs through ServiceOptions.jobs (or the worker's --jobs). */
export const KIT_JOBS = { ...BUILT_IN_JOBS, ...PROVISIONING_JOBS, ...FLEET_JOBS, ...BILLING_JOBS, ...ACCOUNT_JOBS }

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
  mailer: Mailer
  /** Submit and inspect background jobs (seed BackgroundTaskManager); the worker process consumes them. */
  tasks: TaskManager<JobRegistry>
  /**
   * Jobs written in the same transaction as the change that asks for them (jobs/outbox.ts), submitted
   * after commit and by a periodic sweep: a Redis outage delays them, never loses them. The API and the
   * worker start the sweep (startSweeper); the CLI doesn't.
   */
  outbox: Outbox
  close(): Promise<void>
}

export interface ServiceOptions {
  /** Tenant migrations folder (tests and benchmarks use temporary copies). */
  tenantMigrationsFolder?: string
  /** Share an existing host database / Redis client (the HTTP app has its own); they are then not closed here. */
  host?: HostDatabase
  redis?: Redis
  /** Job definitions added to (or overriding) the kit's. */
  jobs?: JobRegistry
  /** Defaults to a mailer built from config.smtp (a log transport without SMTP_HOST). */
  mailer?: Mailer
}

export function createServices(config: Config, logger: Logger, opts: ServiceOptions = {}): Services {
  if (!config.databaseUrl) throw new Error('createServices needs config.databaseUrl (start the embedded Postgres first in development)')
  const host = opts.host ?? createHostDatabase(config.databaseUrl, config.pool.hostMax, config.pool)
  // Worker and CLI: no command timeout (long queue scripts are fine off the request path), but a capped
  // reconnect backoff and errors logged through pino.
  const redis = opts.redis ?? new Redis(config.redisUrl, { retryStrategy: reconnectBackoff(config.redisTimeouts.maxReconnectDelayMs) })
  if (!opts.redis) logRedisErrors(redis, logger, 'services')
  const pools = createPoolManager({
    maxPerTenant: config.pool.maxPerTenant,
    maxTenants: config.pool.maxTenants,
    idleTimeoutS: config.pool.idleTimeoutS,
    connectionBudget: config.pool.connectionBudget,
    acquireTimeoutMs: config.pool.acquireTimeoutMs,
    connectOptions: config.pool,
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
    onRemoteInvalidate: (tenantId) => {
      pools.evict(tenantId).catch((err) => logger.warn({ err, tenantId }, 'closing a tenant pool after a catalog change failed'))
    },
  })
  // The provisioner queues the welcome email through the task manager, whose processors need the
  // provisioner: bound late (tasks is assigned below, before anything can provision).
  const provisioner = createProvisioner({
    host,
    catalog,
    pools,
    config,
    logger,
    migrationsFolder: opts.tenantMigrationsFolder,
    tasks: { submit: (name, payload, submitOpts) => tasks.submit(name, payload as never, submitOpts) },
  })

  const mailer = opts.mailer ?? createMailer(config.smtp, logger, { defaultVariables: { app_name: config.appName } })
  const tasks = createTaskManager({
    registry: { ...KIT_JOBS, ...opts.jobs } as JobRegistry,
    deps: { mailer, provisioner, pools, host, config },
    host,
    catalog,
    pools,
    redis,
    config,
    logger,
  })

  const outbox = createOutbox({ host, tasks, redis, redisPrefix: config.redisPrefix, logger })

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
    mailer,
    tasks,
    outbox,
    close() {
      closing ??= (async () => {
        await outbox.close()
        await tasks.close()
        if (!opts.mailer) mailer.close()
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
