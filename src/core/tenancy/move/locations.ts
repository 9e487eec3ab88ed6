/**
 * Where a tenant's data can live: a location is an isolation mode on a database server, resolved to one
 * database (its name and the URL a move reads and writes it with). A move goes from the tenant's current
 * location to a target `{ isolation, server? }`; the copy, verify and switch steps only ever see two
 * locations, so moving between servers (several Postgres servers, drains) is the same machinery with
 * another `Locations`: one that knows the servers and where each mode lives on them.
 *
 * The implementation is server-locations.ts (the servers of core_db_servers, the default one included).
 */
import type { Tenant, TenantIsolation } from '../../../../drizzle/host/schema.js'

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
