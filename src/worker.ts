/**
 * The worker process (`npm run worker`): consumes the job queues with the registry's processors.
 *
 * It also runs the stale provisioning sweep (tenancy/stale-sweep.ts) every PROVISION_SWEEP_INTERVAL_S, and,
 * when it consumes the system queue, the scheduled work (core/jobs/schedules.ts): it installs every
 * schedule of services.schedules at start (removing schedulers no longer listed) and runs the ticks
 * that submit them. The API process never installs schedules.
 *
 * SIGTERM/SIGINT: stop taking jobs, let running ones finish for up to WORKER_SHUTDOWN_TIMEOUT_MS, then
 * exit 0. Jobs still running at that deadline (or on a SIGKILL) keep their BullMQ lock until it expires;
 * the stalled check of any worker then puts them back in the queue, so they run again rather than vanish.
 *
 * Flags (all optional):
 *   --queues system,tenant      queues to consume (run separate processes per queue to scale them apart)
 *   --concurrency N             jobs at once per queue (default WORKER_CONCURRENCY)
 *   --lock-duration-ms N        lock lifetime; a dead worker's jobs are recovered after about this long
 *   --stalled-interval-ms N     how often to look for stalled jobs
 *   --jobs ./path/to/module.ts  add job definitions: the module's default export is a registry object
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { exitOnConfigError, loadConfigOrExit } from './core/config.js'
import { bootConnectionCheck } from './core/db/connection-budget.js'
import { ensureDatabaseUrl } from './core/db/dev-database.js'
import { createMailer, type Mailer } from './core/email/index.js'
import type { JobRegistry, JobScope } from './core/jobs/registry.js'
import { createTaskManager, type JobWorkers, type TaskManager, type WorkerOptions } from './core/jobs/task-manager.js'
import { loggerOptions } from './core/lib/logger.js'
import { warnIfRedisNotPersistent } from './core/lib/redis-persistence.js'
import { createServices, type Services } from './services.js'
import { type StaleSweeper, startStaleSweep } from './core/tenancy/stale-sweep.js'
import { SCHEDULES_QUEUE, type Scheduler, startScheduler } from './core/jobs/schedules.js'
import { queuePrefix, workerConnection } from './core/jobs/queues.js'

export type WorkerServices = Pick<Services, 'config' | 'logger' | 'host' | 'redis' | 'catalog' | 'pools' | 'jobs' | 'jobDeps'> &
  Partial<Pick<Services, 'provisioner' | 'tasks' | 'schedules'>>

export interface StartWorkersOptions extends WorkerOptions {
  /** Job definitions added to (or overriding) the services' (core and features). */
  registry?: JobRegistry
  /** Extra dependencies for those jobs' processors (ctx.deps), on top of the services' jobDeps. */
  deps?: Record<string, unknown>
  /** Defaults to a mailer built from config.smtp. */
  mailer?: Mailer
  /** Install and tick services.schedules (default: when this process consumes the system queue). */
  schedules?: boolean
}

export interface WorkerRuntime {
  tasks: TaskManager<JobRegistry>
  workers: JobWorkers
  /** The stale provisioning sweep (undefined when PROVISION_SWEEP_INTERVAL_S is 0 or there is no provisioner). */
  sweeper: StaleSweeper | undefined
  /** The scheduled work's ticks (undefined when this process doesn't run them). */
  scheduler: Scheduler | undefined
  /** Graceful stop (see JobWorkers.close), then the task manager and the mailer. Resolves with whether it drained in time. */
  close(timeoutMs?: number): Promise<boolean>
}

/** Start consuming. Used by this process's main() and, in-process, by tests and benchmarks. */
export async function startWorkers(services: WorkerServices, opts: StartWorkersOptions = {}): Promise<WorkerRuntime> {
  const { config, logger } = services
  // The services' own task manager, unless this call brings its own jobs, deps or mailer (tests, benchmarks).
  const custom = opts.registry || opts.deps || opts.mailer || !services.tasks
  const mailer = custom ? (opts.mailer ?? createMailer(config.smtp, logger, { defaultVariables: { app_name: config.appName } })) : undefined
  const tasks = custom
    ? createTaskManager({
        registry: { ...services.jobs, ...opts.registry },
        deps: { ...services.jobDeps, mailer, ...opts.deps },
        host: services.host,
        catalog: services.catalog,
        pools: services.pools,
        redis: services.redis,
        config,
        logger,
      })
    : services.tasks!
  const workers = tasks.startWorkers(opts)
  await workers.ready()
  const provisioner = (opts.deps?.provisioner as Services['provisioner'] | undefined) ?? services.provisioner
  const sweeper =
    provisioner && config.provisioning.sweepIntervalS > 0
      ? startStaleSweep({ provisioner, intervalMs: config.provisioning.sweepIntervalS * 1000, logger })
      : undefined
  // Ticks submit system jobs: whoever consumes the system queue runs them (several processes may: a
  // tick is one BullMQ job, and a tick run twice submits the same job id).
  const consumesSystem = (opts.scopes ?? ['system']).includes('system')
  const scheduler =
    (opts.schedules ?? consumesSystem) && services.schedules
      ? await startScheduler({
          schedules: services.schedules,
          tasks,
          redis: services.redis,
          workerConnection: workerConnection(config),
          prefix: queuePrefix(config, SCHEDULES_QUEUE),
          logger,
        })
      : undefined
  return {
    tasks,
    workers,
    sweeper,
    scheduler,
    async close(timeoutMs) {
      await scheduler?.close()
      await sweeper?.stop()
      const drained = await workers.close(timeoutMs)
      if (custom) await tasks.close()
      if (custom && !opts.mailer) mailer?.close()
      return drained
    },
  }
}

const SCOPES: readonly JobScope[] = ['system', 'tenant']

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${value}"`)
  return n
}

export function parseWorkerFlags(argv: string[]): { options: WorkerOptions; jobModules: string[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      queues: { type: 'string' },
      concurrency: { type: 'string' },
      'lock-duration-ms': { type: 'string' },
      'stalled-interval-ms': { type: 'string' },
      jobs: { type: 'string', multiple: true },
    },
    strict: true,
  })
  const scopes = values.queues?.split(',').map((s) => s.trim()) as JobScope[] | undefined
  const unknown = scopes?.filter((s) => !SCOPES.includes(s))
  if (unknown?.length) throw new Error(`--queues: unknown queue(s) ${unknown.join(', ')} (known: ${SCOPES.join(', ')})`)
  const options: WorkerOptions = {}
  if (scopes) options.scopes = scopes
  const concurrency = positiveInt('concurrency', values.concurrency)
  if (concurrency) options.concurrency = concurrency
  const lock = positiveInt('lock-duration-ms', values['lock-duration-ms'])
  if (lock) options.lockDurationMs = lock
  const stalled = positiveInt('stalled-interval-ms', values['stalled-interval-ms'])
  if (stalled) options.stalledIntervalMs = stalled
  return { options, jobModules: values.jobs ?? [] }
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  let flags: ReturnType<typeof parseWorkerFlags>
  try {
    flags = parseWorkerFlags(argv)
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`)
    process.exit(2)
  }
  const config = loadConfigOrExit()
  const logger = pino(loggerOptions(config))
  const stopEmbedded = await ensureDatabaseUrl(config)

  const registry: JobRegistry = {}
  for (const path of flags.jobModules) {
    const mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: JobRegistry }
    if (!mod.default || typeof mod.default !== 'object')
      throw new Error(`--jobs ${path}: the module must default-export a job registry object`)
    Object.assign(registry, mod.default)
  }

  const services = createServices(config, logger, { jobs: registry })
  try {
    await bootConnectionCheck(config, services.host.sql, logger)
  } catch (err) {
    exitOnConfigError(err)
  }
  // Queued jobs live in Redis: say so at boot when a Redis restart would lose them.
  await warnIfRedisNotPersistent(services.redis, logger)
  const runtime = await startWorkers(services, flags.options)
  // Submit outbox jobs still owed (written while Redis was down); the API processes sweep too, one at a time.
  services.outbox.startSweeper(config.jobs.outboxSweepIntervalMs)
  logger.info(
    {
      queues: flags.options.scopes ?? SCOPES,
      concurrency: flags.options.concurrency ?? config.jobs.workerConcurrency,
      jobs: Object.keys(runtime.tasks.registry),
    },
    'worker started',
  )

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal, timeoutMs: config.jobs.shutdownTimeoutMs }, 'worker stopping: taking no new jobs, waiting for running ones')
    let code = 0
    try {
      const drained = await runtime.close(config.jobs.shutdownTimeoutMs)
      await services.close()
      await stopEmbedded()
      logger.info({ drained }, 'worker stopped')
    } catch (err) {
      logger.error({ err }, 'worker shutdown failed')
      code = 1
    }
    logger.flush?.()
    process.exit(code)
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main()
}
