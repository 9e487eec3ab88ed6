/**
 * Where a tenant's data can live: a location is an isolation mode on a database server, resolved to one
 * database (its name and the URL a move reads and writes it with). A move goes from the tenant's current
 * location to a target `{ isolation, server? }`; the copy, verify and switch steps only ever see two
 * locations, so moving between servers (several Postgres servers, drains) is the same machinery with
 * another `Locations`: one that knows the servers and where each mode lives on them.
 *
 * The default here is the deployment's one tenant server (TENANT_DATABASE_URL): 'database' is
 * `${prefix}_${tenant id}` cloned from the template, 'shared' is SHARED_DATABASE_URL's database.
 */
import { DEFAULT_DB_SERVER, type Tenant, type TenantIsolation } from '../../../../drizzle/host/schema.js'
import { quoteIdent, type Sql, withDatabase } from '../../db/connect.js'
import { badRequest, PG, pgCode } from '../../lib/errors.js'
import type { SharedDatabase } from '../shared/shared-database.js'
import { type TenantTemplate, tenantDbName } from '../template.js'

/** Where a move takes a tenant: a mode, and (with several servers) the server by name. */
export interface MoveTarget {
  isolation: TenantIsolation
  /** A database server's name; omitted: the server the mode lives on by default. */
  server?: string | undefined
}

/** One place a tenant's rows can be: the database, and the URL a move connects with. */
export interface TenantLocation {
  isolation: TenantIsolation
  /** The server's name; undefined for the deployment's one tenant server. */
  server: string | undefined
  dbName: string
  /** A database location: the owner's URL. A shared one: the data role's (row-level security scopes it to the tenant). */
  dbUrl: string
}

export interface Locations {
  /** The location a catalog row names (`dbUrl` already decrypted). */
  current(row: Pick<Tenant, 'id' | 'isolation' | 'dbName'> & { dbUrl: string; server?: string | null | undefined }): TenantLocation
  /** Where `target` puts this tenant. 400 when the target cannot exist on this deployment. */
  resolve(tenantId: string, target: MoveTarget): TenantLocation | Promise<TenantLocation>
  /** Make the location ready to receive the tenant's rows (create its database from the template); idempotent. */
  prepare(location: TenantLocation): Promise<void>
  /**
   * Drop a database location (idempotent). A shared location is not dropped: the mover deletes the tenant's
   * rows from it (copy.ts clearTenant), since other tenants live there.
   */
  dropDatabase(location: TenantLocation): Promise<void>
  /** Whether the location's database exists (a drop is checked with it). */
  databaseExists(location: TenantLocation): Promise<boolean>
  /** The migration version a location has once prepared (the template's, the shared database's). */
  version(isolation: TenantIsolation): string
}

export interface SingleServerDeps {
  /** A pool on the tenant server's maintenance database (CREATE/DROP DATABASE). */
  admin: Sql
  /** TENANT_DATABASE_URL (or DATABASE_URL): the owner's credentials. */
  serverUrl: string
  prefix: string
  template: Pick<TenantTemplate, 'ensure' | 'info'>
  shared: Pick<SharedDatabase, 'ensure' | 'dbName' | 'url' | 'info'> | undefined
}

/** The deployment's one tenant server: both modes live on it. */
export function singleServerLocations(deps: SingleServerDeps): Locations {
  const { admin, serverUrl, prefix, template, shared } = deps
  const sharedOf = () => {
    if (!shared) throw badRequest('SHARED_ISOLATION_OFF', 'shared isolation is not configured (SHARED_DATABASE_URL)')
    return shared
  }
  const onlyServer = (server: string | undefined) => {
    if (server !== undefined && server !== DEFAULT_DB_SERVER) throw badRequest('UNKNOWN_SERVER', `no database server "${server}": this deployment has one tenant server`)
  }
  return {
    current: (row) => ({ isolation: row.isolation, server: row.server ?? undefined, dbName: row.dbName, dbUrl: row.dbUrl }),
    resolve(tenantId, target) {
      onlyServer(target.server)
      if (target.isolation === 'shared') {
        const s = sharedOf()
        return { isolation: 'shared', server: undefined, dbName: s.dbName, dbUrl: s.url }
      }
      if (target.isolation !== 'database') throw badRequest('INVALID_ISOLATION', 'isolation must be database or shared')
      const dbName = tenantDbName(prefix, tenantId)
      return { isolation: 'database', server: undefined, dbName, dbUrl: withDatabase(serverUrl, dbName) }
    },
    async prepare(location) {
      onlyServer(location.server)
      if (location.isolation === 'shared') return sharedOf().ensure()
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
      onlyServer(location.server)
      if (location.isolation !== 'database') throw new Error("a shared location is never dropped: delete the tenant's rows instead")
      await admin.unsafe(`drop database if exists ${quoteIdent(location.dbName)} with (force)`)
    },
    async databaseExists(location) {
      onlyServer(location.server)
      return (await admin`select 1 from pg_database where datname = ${location.dbName}`).length > 0
    },
    version: (isolation) => (isolation === 'shared' ? sharedOf().info.version : template.info.version),
  }
}
