/**
 * HTTP entry point: config, logger, the app plugin, listen, and a graceful close on SIGTERM/SIGINT
 * (in-flight requests finish, pools and Redis close). In development with no DATABASE_URL it first
 * starts an embedded Postgres so `npm ci && npm run dev` is all a new user needs (plus Redis).
 */
import closeWithGrace from 'close-with-grace'
import Fastify from 'fastify'
import app, { serverOptions } from './app.js'
import { loadConfigOrExit } from './config.js'
import { loggerOptions } from './lib/logger.js'

const config = loadConfigOrExit()
let stopEmbedded: (() => Promise<void>) | undefined
if (!config.databaseUrl) {
  const { startEmbeddedPostgres } = await import('./db/embedded.js')
  const embedded = await startEmbeddedPostgres()
  config.databaseUrl = embedded.url
  stopEmbedded = embedded.stop
}

const server = Fastify({
  ...serverOptions(config),
  logger: loggerOptions(config),
  // Give slow clients a bound; keep-alive longer than typical load balancer idle timeouts.
  requestTimeout: 30_000,
  keepAliveTimeout: 72_000,
})
await server.register(app, { config })

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err) server.log.error({ err }, 'closing after an uncaught error')
  else server.log.info({ signal }, 'closing')
  await server.close()
  await stopEmbedded?.()
})

try {
  await server.listen({ host: config.host, port: config.port })
} catch (err) {
  server.log.error({ err }, 'failed to start')
  process.exit(1)
}
