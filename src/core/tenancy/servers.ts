/**
 * The Postgres servers tenant databases live on (core_db_servers), and where a new tenant goes.
 *
 * The row named 'default' is the config's server (TENANT_DATABASE_URL, else DATABASE_URL): the migration
 * makes it, so an install that never adds a server keeps working unchanged, and it stores no URL (the
 * config stays its one source). Every other server is added by an operator (`tenants servers add`) with
 * an admin URL (a role with CREATEDB, on the server's `postgres` database) kept encrypted like a tenant's
 * database URL. Each server gets its own maintenance pool and its own tenant template, made on first use.
 *
 * Shared databases: the default server holds SHARED_DATABASE_URL's; a server of role 'shared' added with a
 * shared URL (`servers add --role shared --shared-url …`, the data role's URL: not the tables' owner, no
 * BYPASSRLS) holds one more, created on first use from the same migrations and sharedified, owned by the
 * server's admin role. Each shared tenant's catalog row names its server and that database.
 *
 * Placement (a PlacementPolicy): picks the server of each new tenant from the active servers and their
 * load: a database tenant among all of them, a shared tenant among those holding a shared database.
 * Draining servers get nothing new, and `tenants servers drain` moves what they hold elsewhere; once empty,
 * `tenants servers remove` forgets them (server-admin.ts).
 */
import { and, asc, count, eq, sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import {
  DB_SERVER_ROLES,
  DEFAULT_DB_SERVER,
  type DbServer,
  type DbServerRole,
  type DbServerStatus,
  dbServers,
  type TenantIsolation,
  tenants,
} from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import { connect, type Sql, withDatabase } from '../db/connect.js'
import type { HostDatabase, HostDb } from '../db/host.js'
import { decrypt, encrypt, type KeyRing } from '../lib/crypto.js'
import { AppError, badRequest, conflict, notFound, PG, pgCode } from '../lib/errors.js'
import { createSharedDatabase, type SharedDatabase, sharedDatabaseName } from './shared/shared-database.js'
import { createTemplate, type TenantTemplate, tenantServerUrl } from './template.js'

export { DEFAULT_DB_SERVER }

/** A server as the runtime needs it: its admin URL decrypted. Never serialised to clients. */
export interface DbServerInfo {
  name: string
  role: DbServerRole
  status: DbServerStatus
  /** Most tenant databases placement puts on it; null: no limit. */
  capacity: number | null
  /** Tenant connections one process may hold on it (its pool budget); null: POOL_CONNECTION_BUDGET. */
  maxConnections: number | null
  /** A role with CREATEDB on the server's maintenance database: tenant databases' URLs are made from it. */
  adminUrl: string
  /** Its shared database as the data role (the default server: SHARED_DATABASE_URL); null: none here. */
  sharedUrl: string | null
  /** A transaction pooler in front of it (`postgres://host:port[?params]`): its database tenants' pools go there; null: directly. */
  poolerUrl: string | null
  createdAt: Date
}

/** What a placement policy sees of a server: no URL. */
export interface ServerLoad {
  name: string
  role: DbServerRole
  status: DbServerStatus
  capacity: number | null
  /** Tenant databases on it now (every catalog row with a database of its own, deleted ones kept included). */
  tenants: number
  /** Whether it holds a shared database (shared tenants can be placed here). */
  hostsShared: boolean
  /** Shared tenants in its shared database (catalog rows, deleted ones kept included). */
  sharedTenants: number
  /** load({ sizes: true }): every database on the server, in bytes (pg_database_size); undefined when unread or the server did not answer. */
  bytes?: number | undefined
  /** load({ sizes: true }): its shared database, in bytes. */
  sharedBytes?: number | undefined
}

export interface PlacementRequest {
  tenantId: string
  slug: string
  planTier: string
  isolation: TenantIsolation
}

/**
 * Choose the server of a new tenant (`request.isolation`: a database of its own, or rows in a shared
 * database): a name among `servers` (active ones, each with its load), or undefined when none will do
 * (provisioning then answers 503 NO_SERVER_AVAILABLE). Pass your own as ProvisionerDeps.placement, e.g. to
 * put a plan on servers of its own.
 */
export type PlacementPolicy = ((request: PlacementRequest, servers: readonly ServerLoad[]) => string | undefined) & {
  /** The policy weighs sizes: callers pass load({ sizes: true }) (a query per server, cached a minute). */
  sizes?: boolean
}

/**
 * The kit's policy. A database tenant: servers with room (tenants < capacity), dedicated before shared (a
 * shared server also holds the long tail's shared database), then the least full (tenants / capacity; a
 * server with no capacity counts as empty), then the fewest tenants, then by name. A shared tenant: the
 * servers holding a shared database, the one with the fewest shared tenants (the default server on a tie,
 * then by name); capacity counts databases, so it does not apply.
 */
export const defaultPlacement: PlacementPolicy = createPlacement({ by: 'count' })

/**
 * The kit's policy, weighing either tenant counts (defaultPlacement) or sizes (PLACEMENT_BY=size): by size,
 * among the same candidates (capacity still counts databases), the server whose databases take the fewest
 * bytes (a database tenant), or whose shared database does (a shared tenant), before the counts; a server
 * whose size could not be read comes after those whose size is known.
 */
export function createPlacement(opts: { by: 'count' | 'size' }): PlacementPolicy {
  const bySize = opts.by === 'size'
  const bytes = (n: number | undefined) => n ?? Number.POSITIVE_INFINITY
  const size = (a: number | undefined, b: number | undefined) => (bySize ? Math.sign(bytes(a) - bytes(b)) || 0 : 0)
  const policy: PlacementPolicy = (request, servers) => {
    if (request.isolation === 'shared') {
      const hosts = servers.filter((s) => s.status === 'active' && s.hostsShared)
      hosts.sort(
        (a, b) =>
          size(a.sharedBytes, b.sharedBytes) ||
          a.sharedTenants - b.sharedTenants ||
          Number(a.name !== DEFAULT_DB_SERVER) - Number(b.name !== DEFAULT_DB_SERVER) ||
          a.name.localeCompare(b.name),
      )
      return hosts[0]?.name
    }
    const fill = (s: ServerLoad) => (s.capacity ? s.tenants / s.capacity : 0)
    const open = servers.filter((s) => s.status === 'active' && (s.capacity === null || s.tenants < s.capacity))
    open.sort(
      (a, b) =>
        Number(a.role !== 'dedicated') - Number(b.role !== 'dedicated') ||
        size(a.bytes, b.bytes) ||
        fill(a) - fill(b) ||
        a.tenants - b.tenants ||
        a.name.localeCompare(b.name),
    )
    return open[0]?.name
  }
  policy.sizes = bySize
  return policy
}

export interface AddServerInput {
  name: string
  adminUrl: string
  role?: DbServerRole | undefined
  capacity?: number | null | undefined
  maxConnections?: number | null | undefined
  /** Role 'shared' only: the shared database to create here, as its data role (postgres://role:password@host:port/dbname). */
  sharedUrl?: string | undefined
  /** A transaction pooler in front of it (validatePoolerUrl). */
  poolerUrl?: string | undefined
}

export interface ServerRegistry {
  /** Every server, the default first. */
  list(): Promise<DbServerInfo[]>
  /** One server, or 404 SERVER_NOT_FOUND. */
  get(name: string): Promise<DbServerInfo>
  /** Tenant databases per server (every server listed, 0 included); with sizes, each server's bytes too (cached a minute). */
  load(db?: HostDb, opts?: { sizes?: boolean | undefined }): Promise<ServerLoad[]>
  /** Register a server (409 SERVER_EXISTS). The caller checks that it answers first (see probe). */
  add(input: AddServerInput): Promise<DbServerInfo>
  /** active ⇄ draining. */
  setStatus(name: string, status: DbServerStatus): Promise<void>
  /** Put a pooler in front of the server's database tenants, or take it away (null); 404 SERVER_NOT_FOUND. server-admin.ts setServerPooler also reroutes the open pools. */
  setPooler(name: string, poolerUrl: string | null): Promise<DbServerInfo>
  /**
   * Delete the catalog row of a draining server (server-admin.ts removeServer checks that it is empty first):
   * false when no draining server has that name; 409 SERVER_NOT_EMPTY when a tenant row still names it.
   */
  delete(name: string): Promise<boolean>
  /** Close what this process holds open on a server (its maintenance pool; its template and shared database handles) and forget it. */
  forget(name: string): Promise<void>
  /** A server's budget as last read (list/get/load refresh it); undefined before the first read. Sync: the pool manager asks it per grant. */
  budgetOf(name: string): number | undefined
  /** Re-read every server (budgets; sharedHosts on its next call). */
  refresh(): Promise<void>
  /** The server's maintenance pool (CREATE/DROP DATABASE), opened on first use. */
  admin(name: string): Promise<Sql>
  /** The server's tenant template (same migrations, same name on every server), made on first use. */
  template(name: string): Promise<TenantTemplate>
  /** The server's shared database (created, migrated and sharedified by its ensure()), or undefined when it holds none. Given a server as listed, no query. */
  shared(server: string | DbServerInfo): Promise<SharedDatabase | undefined>
  /** The servers holding a shared database, active or not (read at most every few seconds; add/setStatus here re-read). */
  sharedHosts(): Promise<DbServerInfo[]>
  /** select 1 on each server's maintenance database, within `timeoutMs`: 'up' or 'down' per server. */
  probe(timeoutMs?: number): Promise<Record<string, 'up' | 'down'>>
  close(): Promise<void>
}

export interface ServerRegistryDeps {
  host: HostDatabase
  config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl' | 'tenantDbPrefix' | 'encryptionKeys'>
  logger: Logger
  /** The default server's maintenance pool and template (the provisioner's own). */
  defaultAdmin: Sql
  defaultTemplate: TenantTemplate
  /** The tenant migrations folder (default migrations/tenant). */
  folder?: string | undefined
  /** Adds statement/lock timeouts to a maintenance URL (provisioning's bounded admin connections). */
  bound: (url: string) => string
  /** The default server's shared database (SHARED_DATABASE_URL); undefined when shared isolation is off. */
  defaultShared?: SharedDatabase | undefined
}

/** How long sharedHosts() answers from memory: shared provisioning asks it on every new tenant. */
const SHARED_HOSTS_TTL_MS = 5000
/** How long a server's sizes are reused: pg_database_size stats every file of every database. */
const SIZES_TTL_MS = 60_000
/** A server's sizes are given up on after this long (it is down: placement carries on without them). */
const SIZES_TIMEOUT_MS = 2000

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/

export function validateServerName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw badRequest('INVALID_SERVER', 'server name must be 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit')
  }
  return name
}

/**
 * A pooler's URL as a server takes it: postgres://host:port, with connection parameters (sslmode…) if
 * needed, and no role, password or database: every tenant connects through it as itself, to its own database.
 */
export function validatePoolerUrl(poolerUrl: string): string {
  let url: URL
  try {
    url = new URL(poolerUrl)
  } catch {
    throw badRequest('INVALID_SERVER', 'the pooler URL must be a postgres:// URL')
  }
  if ((url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') || !url.hostname) throw badRequest('INVALID_SERVER', 'the pooler URL must be a postgres:// URL with a host')
  if (url.username || url.password || url.pathname.length > 1)
    throw badRequest('INVALID_SERVER', "the pooler URL names a host and port only (postgres://host:port): each tenant connects through it with its own role and database")
  return poolerUrl
}

/** A tenant's database URL routed through a pooler: the pooler's host, port and parameters; the tenant's role, password and database. */
export function throughPooler(dbUrl: string, poolerUrl: string): string {
  const url = new URL(dbUrl)
  const pooler = new URL(poolerUrl)
  url.hostname = pooler.hostname
  url.port = pooler.port
  for (const [k, v] of pooler.searchParams) url.searchParams.set(k, v)
  return url.toString()
}

export function createServerRegistry(deps: ServerRegistryDeps): ServerRegistry {
  const { host, config, logger } = deps
  const keys: readonly KeyRing[] = config.encryptionKeys
  const budgets = new Map<string, number | undefined>()
  const admins = new Map<string, Sql>([[DEFAULT_DB_SERVER, deps.defaultAdmin]])
  const templates = new Map<string, TenantTemplate>([[DEFAULT_DB_SERVER, deps.defaultTemplate]])
  /** The admin URL each opened pool was made from: a server re-added under the same name with another URL gets a new pool. */
  const openedWith = new Map<string, string>()
  /** Other servers' shared databases, by name, with the URL each was made from. */
  const shareds = new Map<string, { url: string; db: SharedDatabase }>()
  let hostsCache: { at: number; hosts: Promise<DbServerInfo[]> } | undefined
  const sizesCache = new Map<string, { at: number; sizes: Promise<{ bytes?: number; sharedBytes?: number }> }>()

  /** Every database's bytes on the server, and its shared database's; {} when it does not answer in time. */
  function sizesOf(name: string, sharedDb: string | undefined): Promise<{ bytes?: number; sharedBytes?: number }> {
    const cached = sizesCache.get(name)
    if (cached && performance.now() - cached.at < SIZES_TTL_MS) return cached.sizes
    const read = (async () => {
      const sql = await admin(name)
      const [row] = await sql<{ total: string; shared: string | null }[]>`
        select coalesce(sum(pg_database_size(oid)), 0)::text as total,
          (select pg_database_size(oid)::text from pg_database where datname = ${sharedDb ?? ''}) as shared
        from pg_database where not datistemplate`
      return { bytes: Number(row!.total), sharedBytes: row!.shared === null ? undefined : Number(row!.shared) }
    })()
    let timer: NodeJS.Timeout | undefined
    const sizes = Promise.race([read, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), SIZES_TIMEOUT_MS)))])
      .finally(() => clearTimeout(timer))
      .catch((err: unknown) => {
        logger.warn({ server: name, err: err instanceof Error ? err.message : String(err) }, 'reading database sizes failed; placement goes without them')
        sizesCache.delete(name)
        return {}
      })
    sizesCache.set(name, { at: performance.now(), sizes })
    return sizes
  }

  function toInfo(row: DbServer): DbServerInfo {
    budgets.set(row.name, row.maxConnections ?? undefined)
    const adminUrl = row.name === DEFAULT_DB_SERVER ? withDatabase(tenantServerUrl(config), 'postgres') : decrypt(row.adminUrlEncrypted!, keys)
    return {
      name: row.name,
      role: row.role,
      status: row.status,
      capacity: row.capacity,
      maxConnections: row.maxConnections,
      adminUrl,
      sharedUrl: row.name === DEFAULT_DB_SERVER ? (deps.defaultShared?.url ?? null) : row.sharedUrlEncrypted ? decrypt(row.sharedUrlEncrypted, keys) : null,
      poolerUrl: row.poolerUrlEncrypted ? decrypt(row.poolerUrlEncrypted, keys) : null,
      createdAt: row.createdAt,
    }
  }

  /** A shared URL for server `name` (admin URL `adminUrl`): a postgres URL naming a database and a data role other than the admin's. */
  function validateSharedUrl(sharedUrl: string, adminUrl: string): string {
    let url: URL
    try {
      url = new URL(sharedUrl)
    } catch {
      throw badRequest('INVALID_SERVER', 'the shared URL must be a postgres:// URL')
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw badRequest('INVALID_SERVER', 'the shared URL must be a postgres:// URL')
    try {
      sharedDatabaseName(sharedUrl)
    } catch {
      throw badRequest('INVALID_SERVER', 'the shared URL must name its database (postgres://role:password@host:port/dbname)')
    }
    if (!url.pathname.slice(1)) throw badRequest('INVALID_SERVER', 'the shared URL must name its database (postgres://role:password@host:port/dbname)')
    const role = decodeURIComponent(url.username)
    if (!role) throw badRequest('INVALID_SERVER', 'the shared URL must name its data role')
    if (role === decodeURIComponent(new URL(adminUrl).username))
      throw badRequest('INVALID_SERVER', "the shared URL's role must not be the admin URL's: the tables' owner can turn row-level security off")
    return sharedUrl
  }

  async function list(): Promise<DbServerInfo[]> {
    const rows = await host.db.select().from(dbServers).orderBy(sql`${dbServers.name} <> ${DEFAULT_DB_SERVER}`, asc(dbServers.name))
    return rows.map(toInfo)
  }

  async function get(name: string): Promise<DbServerInfo> {
    const [row] = await host.db.select().from(dbServers).where(eq(dbServers.name, name))
    if (!row) throw notFound('SERVER_NOT_FOUND', `no database server "${name}"`)
    return toInfo(row)
  }

  async function admin(name: string): Promise<Sql> {
    if (name === DEFAULT_DB_SERVER) return deps.defaultAdmin
    const server = await get(name)
    const existing = admins.get(name)
    if (existing && openedWith.get(name) === server.adminUrl) return existing
    if (existing) await existing.end({ timeout: 5 }).catch(() => {})
    const sql = connect(deps.bound(server.adminUrl), { max: 2, idleTimeoutS: 30, applicationName: 'tenantkit-admin' })
    admins.set(name, sql)
    openedWith.set(name, server.adminUrl)
    templates.delete(name)
    return sql
  }

  return {
    list,
    get,
    async load(db = host.db, opts = {}) {
      const [servers, counts] = await Promise.all([
        db.select().from(dbServers).orderBy(asc(dbServers.name)),
        db
          .select({ server: tenants.server, isolation: tenants.isolation, n: count() })
          .from(tenants)
          .groupBy(tenants.server, tenants.isolation),
      ])
      const n = (server: string, isolation: TenantIsolation) => counts.find((c) => c.server === server && c.isolation === isolation)?.n ?? 0
      const sharedName = (s: DbServer) => {
        const url = s.name === DEFAULT_DB_SERVER ? deps.defaultShared?.url : s.sharedUrlEncrypted ? decrypt(s.sharedUrlEncrypted, keys) : undefined
        return url ? sharedDatabaseName(url) : undefined
      }
      const sizes = opts.sizes
        ? await Promise.all(servers.map((s) => (s.status === 'active' ? sizesOf(s.name, sharedName(s)) : Promise.resolve({}))))
        : undefined
      return servers.map((s, i) => {
        budgets.set(s.name, s.maxConnections ?? undefined)
        return {
          ...sizes?.[i],
          name: s.name,
          role: s.role,
          status: s.status,
          capacity: s.capacity,
          tenants: n(s.name, 'database'),
          hostsShared: s.name === DEFAULT_DB_SERVER ? deps.defaultShared !== undefined : s.sharedUrlEncrypted !== null,
          sharedTenants: n(s.name, 'shared'),
        }
      })
    },
    async add(input) {
      const name = validateServerName(input.name)
      let url: URL
      try {
        url = new URL(input.adminUrl)
      } catch {
        throw badRequest('INVALID_SERVER', 'the admin URL must be a postgres:// URL')
      }
      if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw badRequest('INVALID_SERVER', 'the admin URL must be a postgres:// URL')
      const role = input.role ?? 'dedicated'
      if (!DB_SERVER_ROLES.includes(role)) throw badRequest('INVALID_SERVER', 'role must be shared or dedicated')
      if (input.sharedUrl !== undefined && role !== 'shared') throw badRequest('INVALID_SERVER', 'only a server of role shared holds a shared database')
      const sharedUrl = input.sharedUrl === undefined ? undefined : validateSharedUrl(input.sharedUrl, input.adminUrl)
      const poolerUrl = input.poolerUrl === undefined ? undefined : validatePoolerUrl(input.poolerUrl)
      for (const [what, n] of [
        ['capacity', input.capacity],
        ['max connections', input.maxConnections],
      ] as const) {
        if (n !== undefined && n !== null && (!Number.isInteger(n) || n < (what === 'capacity' ? 0 : 1)))
          throw badRequest('INVALID_SERVER', `${what} must be a whole number`)
      }
      try {
        const [row] = await host.db
          .insert(dbServers)
          .values({
            name,
            adminUrlEncrypted: encrypt(withDatabase(input.adminUrl, 'postgres'), keys),
            role,
            capacity: input.capacity ?? null,
            maxConnections: input.maxConnections ?? null,
            sharedUrlEncrypted: sharedUrl === undefined ? null : encrypt(sharedUrl, keys),
            poolerUrlEncrypted: poolerUrl === undefined ? null : encrypt(poolerUrl, keys),
          })
          .returning()
        hostsCache = undefined
        logger.info({ server: name, role }, 'database server added')
        return toInfo(row!)
      } catch (err) {
        if (pgCode(err instanceof Error ? (err.cause ?? err) : err) === PG.uniqueViolation) throw conflict('SERVER_EXISTS', `database server "${name}" exists already`)
        throw err
      }
    },
    async setStatus(name, status) {
      const changed = await host.db.update(dbServers).set({ status, updatedAt: new Date() }).where(eq(dbServers.name, name)).returning({ name: dbServers.name })
      if (!changed.length) throw notFound('SERVER_NOT_FOUND', `no database server "${name}"`)
      hostsCache = undefined
    },
    async setPooler(name, poolerUrl) {
      const sealed = poolerUrl === null ? null : encrypt(validatePoolerUrl(poolerUrl), keys)
      const [row] = await host.db.update(dbServers).set({ poolerUrlEncrypted: sealed, updatedAt: new Date() }).where(eq(dbServers.name, name)).returning()
      if (!row) throw notFound('SERVER_NOT_FOUND', `no database server "${name}"`)
      logger.info({ server: name, pooler: poolerUrl === null ? null : new URL(poolerUrl).host }, 'database server pooler set')
      return toInfo(row)
    },
    async delete(name) {
      if (name === DEFAULT_DB_SERVER) return false
      try {
        const gone = await host.db
          .delete(dbServers)
          .where(and(eq(dbServers.name, name), eq(dbServers.status, 'draining')))
          .returning({ name: dbServers.name })
        hostsCache = undefined
        return gone.length > 0
      } catch (err) {
        // core_tenants.server references the row: a tenant placed there after the caller's check.
        if (pgCode(err instanceof Error ? (err.cause ?? err) : err) === PG.foreignKeyViolation)
          throw new AppError(409, 'SERVER_NOT_EMPTY', `database server "${name}" still holds tenants`)
        throw err
      }
    },
    async forget(name) {
      if (name === DEFAULT_DB_SERVER) return
      const sql = admins.get(name)
      admins.delete(name)
      openedWith.delete(name)
      templates.delete(name)
      shareds.delete(name)
      budgets.delete(name)
      sizesCache.delete(name)
      hostsCache = undefined
      await sql?.end({ timeout: 5 }).catch(() => {})
    },
    budgetOf: (name) => budgets.get(name),
    async refresh() {
      hostsCache = undefined
      await list()
    },
    admin,
    async template(name) {
      const sql = await admin(name)
      let template = templates.get(name)
      if (!template) {
        const server = await get(name)
        template = createTemplate({ admin: sql, serverUrl: server.adminUrl, prefix: config.tenantDbPrefix, folder: deps.folder, logger })
        templates.set(name, template)
      }
      return template
    },
    async shared(nameOrInfo) {
      const name = typeof nameOrInfo === 'string' ? nameOrInfo : nameOrInfo.name
      if (name === DEFAULT_DB_SERVER) return deps.defaultShared
      // A server as just listed (sharedHosts) needs no query.
      const server = typeof nameOrInfo === 'string' ? await get(name) : nameOrInfo
      if (!server.sharedUrl) return undefined
      const known = shareds.get(name)
      if (known && known.url === server.sharedUrl && openedWith.get(name) === server.adminUrl) return known.db
      // Owned by the server's admin role (as the default's by TENANT_DATABASE_URL's), reached as the data role.
      const db = createSharedDatabase({ admin: await admin(name), serverUrl: server.adminUrl, url: server.sharedUrl, folder: deps.folder, logger })
      shareds.set(name, { url: server.sharedUrl, db })
      return db
    },
    sharedHosts() {
      if (!hostsCache || performance.now() - hostsCache.at > SHARED_HOSTS_TTL_MS) {
        const hosts = list().then((all) => all.filter((s) => s.sharedUrl !== null))
        hostsCache = { at: performance.now(), hosts }
        hosts.catch(() => {
          hostsCache = undefined
        })
      }
      return hostsCache.hosts
    },
    async probe(timeoutMs = 1500) {
      const out: Record<string, 'up' | 'down'> = {}
      await Promise.all(
        (await list()).map(async (s) => {
          try {
            const sql = await admin(s.name)
            await Promise.race([
              sql`select 1`,
              new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), timeoutMs).unref()),
            ])
            out[s.name] = 'up'
          } catch {
            out[s.name] = 'down'
          }
        }),
      )
      return out
    },
    async close() {
      await Promise.all([...admins].filter(([name]) => name !== DEFAULT_DB_SERVER).map(([, sql]) => sql.end({ timeout: 5 })))
      admins.clear()
    },
  }
}
