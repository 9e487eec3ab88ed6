/** The host database on `fastify.host`; migrated at boot when AUTO_MIGRATE is on (default outside production). */
import fp from 'fastify-plugin'
import type { AppOptions } from '../config.js'
import { bootConnectionCheck } from '../db/connection-budget.js'
import { createHostDatabase, type HostDatabase } from '../db/host.js'
import { migrateHost } from '../db/migrations.js'

declare module 'fastify' {
  interface FastifyInstance {
    host: HostDatabase
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const url = config.databaseUrl
    if (!url) throw new Error('DATABASE_URL is not set (server.ts starts an embedded Postgres in development)')
    if (config.autoMigrate) await migrateHost(url)
    const host = createHostDatabase(url, config.pool.hostMax, config.pool)
    fastify.decorate('host', host)
    fastify.addHook('onClose', () => host.close())
    await bootConnectionCheck(config, host.sql, fastify.log)
  },
  { name: 'host-db' },
)
