/**
 * A feature is one folder under src/features/ and one manifest, `defineFeature({...})`: what it adds to
 * the HTTP app (plugins, routes), to the job queue (jobs and what their processors need) and to a
 * tenant's lifecycle (steps before or after a named core step). src/features/index.ts lists the kit's
 * features; the composition root (src/services.ts, src/app.ts) hands that list to the core, which
 * imports no feature: it only knows this contract.
 *
 * A feature imports the core freely and other features only through their index.ts (their public API).
 */
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { AppOptions, Config } from './config.js'
import type { HostDatabase } from './db/host.js'
import type { Mailer } from './email/mailer.js'
import type { DomainEventListener } from './events/domain-events.js'
import type { Outbox } from './jobs/outbox.js'
import type { InvalidationBus } from './lib/invalidated-cache.js'
import type { JobRegistry, JobSubmitter } from './jobs/registry.js'
import type { Schedule } from './jobs/schedules.js'
import type { CatalogHandle } from './tenancy/catalog.js'
import type { LifecycleStepContribution } from './tenancy/lifecycle.js'
import type { PermissionRegistry } from './tenancy/rbac.js'
import type { ErrorCodeTable } from './lib/error-codes.js'
import type { PoolManager } from './tenancy/types.js'

/** What a feature's factories get: the core services of this process (API, worker or CLI alike). */
export interface CoreServices {
  config: Config
  logger: Logger
  host: HostDatabase
  redis: Redis
  catalog: CatalogHandle
  pools: PoolManager
  mailer: Mailer
  /** The process' task manager (bound late: usable once the services are built, i.e. from any step or job). */
  tasks: Pick<JobSubmitter, 'submit' | 'submitMany' | 'submitWorkflow'>
}

/** Any Fastify plugin (each carries its own options and type provider; registering checks nothing more). */
export type AnyPlugin = (instance: never, opts: never, done: never) => unknown

export interface FeatureRoute {
  prefix: string
  /**
   * 'tenant': inside the guarded tenant scope, mounted at /api and /t/:tenant/api (the tenant guard runs
   * before every route: isolation is structural). 'root': at `prefix` itself.
   */
  scope: 'tenant' | 'root'
  plugin: AnyPlugin
  /** The plugin's options (default: the app's, { config }); computed at mount time, after every feature's plugins. */
  options?: (fastify: FastifyInstance, opts: AppOptions) => object
}

export interface Feature {
  name: string
  /** Fastify plugins (fastify-plugin wrapped: decorators, hooks) registered before any route, in list order. */
  plugins?: readonly AnyPlugin[]
  routes?: readonly FeatureRoute[]
  /** Job definitions this feature adds (names `<feature>.<verb>`); the API and the worker both know them. */
  jobs?: JobRegistry
  /** What this feature's job processors find in ctx.deps, built once per process. */
  jobDeps?: (core: CoreServices) => Record<string, unknown>
  /**
   * Recurring runs of this feature's jobs (src/core/jobs/schedules.ts; `schedule({...})` checks job and
   * payload). With the core's CORE_SCHEDULES they are the one list of scheduled work, which the worker
   * installs at start and the README's "Scheduled work" table shows.
   */
  schedules?: readonly Schedule[]
  /** Steps this feature adds to tenant lifecycle events (they get the host DB, config and task manager on ctx). */
  lifecycle?: readonly LifecycleStepContribution[]
  /** Resources and actions its routes' `config.access` and per-user grants name (declared in `Permissions` too, for the types). */
  permissions?: PermissionRegistry
  /** The error codes its routes answer beyond the core's (declared in `ErrorCodes` too, for the types). */
  errors?: ErrorCodeTable
  /** A listener for the domain events every feature publishes (src/core/events/domain-events.ts), made once per process. */
  listen?: (core: CoreServices & { outbox: Pick<Outbox, 'write' | 'dispatch'>; invalidations: InvalidationBus }) => DomainEventListener
}

/** Identity with a type check: `export default defineFeature({ name: 'projects', routes: [...] })`. */
export const defineFeature = <const F extends Feature>(feature: F): F => feature
