/**
 * HTTP entry point: config, logger, the app plugin, listen, and a graceful close on SIGTERM/SIGINT
 * (in-flight requests finish, pools and Redis close). In development with no DATABASE_URL it first
 * starts an embedded Postgres so `npm ci && npm run dev` is all a new user needs (plus Redis).
 * With WORKER_IN_PROCESS (on in development) the job workers run in this process too, so a signup's
 * tenant is provisioned without a separate `npm run worker`.
 */
import closeWithGrace from 'close-with-grace'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from './app.js'
import { exitOnConfigError, loadConfigOrExit } from './core/config.js'
import { ensureDatabaseUrl } from './core/db/dev-database.js'
import { loggerOptions } from './core/lib/logger.js'
import { startWorkers, type WorkerRuntime } from './worker.js'

const config = loadConfigOrExit()
const stopEmbedded = await ensureDatabaseUrl(config)

const server = Fastify({
  ...serverOptions(config),
  logger: loggerOptions(config),
  // Give slow clients a bound; keep-alive longer than typical load balancer idle timeouts.
  requestTimeout: 30_000,
  keepAliveTimeout: 72_000,
})
// fp(): the app's decorators (services) are visible here, as in tests, for the in-process workers.
try {
  await server.register(fp(app), { config })
  await server.ready()
} catch (err) {
  await stopEmbedded()
  exitOnConfigError(err) // e.g. pools that can't fit Postgres' max_connections: one line, exit 1
}

let workers: WorkerRuntime | undefined
if (config.jobs.workerInProcess) {
  workers = await startWorkers(server.services)
  server.log.info({ concurrency: config.jobs.workerConcurrency }, 'job workers running in-process (WORKER_IN_PROCESS); run `npm run worker` separately in production')
} else if (!config.jobs.provisionInline) {
  server.log.info('job workers run in a separate process (`npm run worker`); without one, new tenants stay "provisioning"')
}

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err) server.log.error({ err }, 'closing after an uncaught error')
  else server.log.info({ signal }, 'closing')
  // Workers first: their running jobs use the app's pools and Redis, which close with the app. Within
  // close-with-grace's 10 s; a job still running after that is picked up again by the stalled check.
  await workers?.close(Math.min(config.jobs.shutdownTimeoutMs, 5_000))
  await server.close()
  await stopEmbedded()
})

try {
  await server.listen({ host: config.host, port: config.port })
} catch (err) {
  server.log.error({ err }, 'failed to start')
  process.exit(1)
}
