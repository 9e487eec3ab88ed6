/**
 * Locations on several Postgres servers (core_db_servers): what the mover uses once servers exist. A
 * database location is `${prefix}_${tenant id}` on a named server, created from that server's own
 * template; a shared location is the shared database of a server that holds one (SHARED_DATABASE_URL's on
 * the default server, `servers add --shared-url` on others). So a server move (`tenants move <slug>
 * --server NAME`, a drain) is a move whose two locations differ only in their server, in either mode: the
 * same prepare → mark → copy → verify → switch → cleanup steps, write pause and checks.
 */
import type { MigrationInfo } from '../../db/migrations.js'
import { quoteIdent, withDatabase } from '../../db/connect.js'
import { AppError, badRequest, conflict, PG, pgCode } from '../../lib/errors.js'
import { DEFAULT_DB_SERVER, type ServerRegistry } from '../servers.js'
import type { SharedDatabase } from '../shared/shared-database.js'
import { tenantDbName } from '../template.js'
import type { Locations, TenantLocation } from './locations.js'

export interface ServerLocationsDeps {
  servers: ServerRegistry
  prefix: string
  /** The tenant migrations every server's template is built from (the provisioner's template info). */
  templateInfo: MigrationInfo
  shared: Pick<SharedDatabase, 'ensure' | 'dbName' | 'url' | 'info'> | undefined
  /**
   * The server of a move that names none: to a database (a shared tenant upgraded), the placement policy's
   * choice, or the tenant's own server when it has a database already; to the shared layout (a downgrade),
   * the placement's choice among the servers holding a shared database. Default: the default server.
   */
  place?: (tenantId: string, isolation: 'database' | 'shared') => Promise<string | undefined>
}

export function serverLocations(deps: ServerLocationsDeps): Locations {
  const { servers, prefix, shared } = deps
  const sharedOf = () => {
    if (!shared) throw badRequest('SHARED_ISOLATION_OFF', 'shared isolation is not configured (SHARED_DATABASE_URL)')
    return shared
  }
  /** The named server, as a move target: known (400 UNKNOWN_SERVER otherwise) and not draining. */
  async function targetServer(name: string) {
    try {
      const server = await servers.get(name)
      if (server.status === 'draining') throw conflict('SERVER_DRAINING', `database server "${name}" is draining; it takes no tenants`)
      return server
    } catch (err) {
      if (err instanceof AppError && err.code === 'SERVER_NOT_FOUND') throw badRequest('UNKNOWN_SERVER', `no database server "${name}"`)
      throw err
    }
  }
  const serverOf = (location: TenantLocation) => location.server ?? DEFAULT_DB_SERVER
  /** The shared database of a server (400 INVALID_SERVER when it holds none). */
  async function sharedAt(name: string) {
    if (name === DEFAULT_DB_SERVER) return sharedOf()
    const db = await servers.shared(name)
    if (!db) throw badRequest('INVALID_SERVER', `database server "${name}" holds no shared database (servers add --role shared --shared-url …)`)
    return db
  }

  return {
    current: (row) => ({ isolation: row.isolation, server: row.server ?? DEFAULT_DB_SERVER, dbName: row.dbName, dbUrl: row.dbUrl }),
    async resolve(tenantId, target) {
      if (target.isolation === 'shared') {
        sharedOf() // shared isolation needs SHARED_DATABASE_URL, wherever the tenant goes
        const named = target.server ?? (deps.place ? await deps.place(tenantId, 'shared') : DEFAULT_DB_SERVER) ?? DEFAULT_DB_SERVER
        const server = await targetServer(named)
        const s = await sharedAt(server.name)
        return { isolation: 'shared', server: server.name, dbName: s.dbName, dbUrl: s.url }
      }
      if (target.isolation !== 'database') throw badRequest('INVALID_ISOLATION', 'isolation must be database or shared')
      // Omitted: placement's choice (deps.place), else the default server.
      const named = target.server ?? (deps.place ? await deps.place(tenantId, 'database') : DEFAULT_DB_SERVER)
      if (named === undefined) throw new AppError(503, 'NO_SERVER_AVAILABLE', 'no database server can take the tenant (all full or draining)')
      const server = await targetServer(named)
      const dbName = tenantDbName(prefix, tenantId)
      return { isolation: 'database', server: server.name, dbName, dbUrl: withDatabase(server.adminUrl, dbName) }
    },
    async prepare(location) {
      if (location.isolation === 'shared') return (await sharedAt(serverOf(location))).ensure()
      const name = serverOf(location)
      const [admin, template] = await Promise.all([servers.admin(name), servers.template(name)])
      const tpl = await template.ensure()
      try {
        await admin.unsafe(`create database ${quoteIdent(location.dbName)} template ${quoteIdent(tpl)}`)
      } catch (err) {
        // Derived from the tenant id and recorded in the move: an existing one is what an interrupted run
        // created. The copy step empties it before it writes, so whatever it holds is replaced.
        if (pgCode(err) !== PG.duplicateDatabase) throw err
      }
    },
    async dropDatabase(location) {
      if (location.isolation !== 'database') throw new Error("a shared location is never dropped: delete the tenant's rows instead")
      await (await servers.admin(serverOf(location))).unsafe(`drop database if exists ${quoteIdent(location.dbName)} with (force)`)
    },
    async databaseExists(location) {
      const admin = await servers.admin(serverOf(location))
      return (await admin`select 1 from pg_database where datname = ${location.dbName}`).length > 0
    },
    version: (isolation) => (isolation === 'shared' ? sharedOf().info.version : deps.templateInfo.version),
  }
}
