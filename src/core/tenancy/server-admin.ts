/**
 * The operator's view and lifecycle of the database servers (core_db_servers), one implementation for
 * `npm run tenants -- servers …` and /admin/api/servers: the overview (role, status, capacity, what each
 * holds, this process' pool budget and use, whether it answers), drain (move/drain-server.ts), activate,
 * its pooler, and remove.
 *
 * A server's pooler (PgBouncer in front of it): its database tenants' pools connect there as themselves
 * (catalog.ts derives each one's URL). Setting or clearing it reroutes every process: each drops its cached
 * catalog records of the server's tenants and closes its pools there (`serversChannel`, `{ rerouted }`), so
 * the next lease opens on the new route; leases already out finish on the old one.
 *
 * Removing a server: only a draining one (placement sends it nothing new, so nothing lands there between
 * the checks and the delete), never the default one (the config's), and only when it holds nothing: no
 * catalog row names it (live, soft-deleted: its database is still there, or shared tenants), no move is in
 * flight from or to it, and its shared database, if any, holds no row. Then its catalog row goes (the
 * delete also requires status draining, and core_tenants.server's foreign key refuses it if a tenant row
 * appeared meanwhile), every process closes what it holds open there (the invalidation bus, `serversChannel`),
 * and its shared database is dropped when the kit created it (SHARED_DATABASE_MARK) and no other server
 * or the host database is that same database, and so are the kit's tenant templates there (this deployment's
 * `<TENANT_DB_PREFIX>_tpl_*`) when no other server row and not the host database is on that Postgres. Nothing
 * else on the server is touched.
 *
 * "That same Postgres" is decided by the cluster's system identifier (pg_control_system()), not by host
 * strings: localhost:5432 and 127.0.0.1:5432 are one cluster. A server that can't be asked counts as maybe
 * the same, so nothing is dropped on a guess.
 */
import { createConnection } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { and, count, eq, or, sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import { DEFAULT_DB_SERVER, type DbServerRole, type DbServerStatus, tenantMoves, tenants } from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import type { Services } from '../core-services.js'
import { connect, quoteIdent, type Sql, withDatabase } from '../db/connect.js'
import type { HostDatabase } from '../db/host.js'
import { errorMessage } from '../lib/error-log.js'
import { AppError, badRequest, conflict, isDependencyDown, unavailable } from '../lib/errors.js'
import type { InvalidationBus, Subscription } from '../lib/invalidated-cache.js'
import type { CatalogHandle } from './catalog.js'
import { type DbServerInfo, type ServerRegistry, validatePoolerUrl } from './servers.js'
import { SHARED_DATABASE_MARK, sharedDatabaseName } from './shared/shared-database.js'
import { sharedTables } from './shared/sharedify.js'
import type { PoolManager } from './types.js'

/** The pub/sub channel on which a removed server is announced to every process of the deployment. */
export const serversChannel = (redisPrefix: string) => `${redisPrefix}:servers`

/** host:port of a server URL, never its credentials ('-' when it does not parse). */
export function hostOf(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}`
  } catch {
    return '-'
  }
}

/** The deps out of a process' services (CLI, routes). */
export const serverAdminDeps = (s: Pick<Services, 'host' | 'provisioner' | 'pools' | 'catalog' | 'config' | 'invalidations' | 'logger'>): ServerAdminDeps => ({
  host: s.host,
  catalog: s.catalog,
  servers: s.provisioner.servers,
  pools: s.pools,
  config: s.config,
  invalidations: s.invalidations,
  logger: s.logger,
})

export interface ServerAdminDeps {
  host: HostDatabase
  servers: ServerRegistry
  pools: Pick<PoolManager, 'stats' | 'evictServer'>
  catalog: Pick<CatalogHandle, 'dropServer'>
  config: Pick<Config, 'pool' | 'databaseUrl' | 'redisPrefix' | 'tenantDbPrefix'>
  invalidations: Pick<InvalidationBus, 'publish'>
  logger: Pick<Logger, 'info' | 'warn'>
}

/** What a server holds, from the catalog. */
export interface ServerHoldings {
  /** Tenant databases on it (catalog rows of database isolation, soft-deleted ones included: their databases are still there). */
  databases: number
  /** Shared tenants in its shared database (soft-deleted ones included: their rows are still there). */
  shared: number
  /** Of those, soft-deleted (`tenants restore`, or `tenants delete --hard` to drop them). */
  deleted: number
  /** Moves in flight from or to it. */
  moving: number
}

/** A server as an operator sees it: no URL, no credentials. */
export interface ServerOverview {
  name: string
  role: DbServerRole
  status: DbServerStatus
  capacity: number | null
  /** host:port of its admin URL. */
  host: string
  /** The name of its shared database, or null when it holds none. */
  sharedDatabase: string | null
  /** host:port of the pooler its database tenants connect through, or null: directly. */
  pooler: string | null
  tenants: ServerHoldings
  /** This process' tenant pools on it: its budget and what is reserved and leased now. */
  pool: { budget: number; reserved: number; inUse: number; openPools: number; waiters: number }
  /** Whether it answered `select 1` (overview with probe); null when not asked. */
  reachable: boolean | null
  createdAt: Date
}

const EMPTY: ServerHoldings = { databases: 0, shared: 0, deleted: 0, moving: 0 }

/** Per server: what the catalog says it holds (servers holding nothing are absent). */
async function holdings(host: HostDatabase, name?: string): Promise<Map<string, ServerHoldings>> {
  const deleted = sql<boolean>`${tenants.deletedAt} is not null`
  const [rows, moves] = await Promise.all([
    host.db
      .select({ server: tenants.server, isolation: tenants.isolation, deleted, n: count() })
      .from(tenants)
      .where(name === undefined ? undefined : eq(tenants.server, name))
      .groupBy(tenants.server, tenants.isolation, deleted),
    host.db
      .select({ from: sql<string>`coalesce(${tenantMoves.fromServer}, ${DEFAULT_DB_SERVER})`, to: sql<string>`coalesce(${tenantMoves.toServer}, ${DEFAULT_DB_SERVER})` })
      .from(tenantMoves)
      .where(
        and(
          eq(tenantMoves.state, 'running'),
          name === undefined
            ? undefined
            : or(sql`coalesce(${tenantMoves.fromServer}, ${DEFAULT_DB_SERVER}) = ${name}`, sql`coalesce(${tenantMoves.toServer}, ${DEFAULT_DB_SERVER}) = ${name}`),
        ),
      ),
  ])
  const out = new Map<string, ServerHoldings>()
  const of = (server: string) => {
    const h = out.get(server) ?? { ...EMPTY }
    out.set(server, h)
    return h
  }
  for (const r of rows) {
    const h = of(r.server)
    if (r.isolation === 'shared') h.shared += r.n
    else h.databases += r.n
    if (r.deleted) h.deleted += r.n
  }
  for (const m of moves) {
    of(m.from).moving++
    if (m.to !== m.from) of(m.to).moving++
  }
  return out
}

/** Every server, the default first: role, status, capacity, what it holds, this process' pools there, and (probe) whether it answers. */
export async function describeServers(deps: ServerAdminDeps, opts: { probe?: boolean; timeoutMs?: number } = {}): Promise<ServerOverview[]> {
  const [all, held, up] = await Promise.all([
    deps.servers.list(),
    holdings(deps.host),
    opts.probe ? deps.servers.probe(opts.timeoutMs) : Promise.resolve(undefined),
  ])
  const stats = deps.pools.stats().servers
  return all.map((s) => {
    const p = stats[s.name]
    return {
      name: s.name,
      role: s.role,
      status: s.status,
      capacity: s.capacity,
      host: hostOf(s.adminUrl),
      sharedDatabase: s.sharedUrl === null ? null : sharedDatabaseName(s.sharedUrl),
      pooler: s.poolerUrl === null ? null : hostOf(s.poolerUrl),
      tenants: held.get(s.name) ?? { ...EMPTY },
      pool: {
        budget: s.maxConnections ?? deps.config.pool.connectionBudget,
        reserved: p?.reservedConnections ?? 0,
        inUse: p?.leases ?? 0,
        openPools: p?.openPools ?? 0,
        waiters: p?.waiters ?? 0,
      },
      reachable: up === undefined ? null : up[s.name] === 'up',
      createdAt: s.createdAt,
    }
  })
}

export interface RemovedServer {
  name: string
  /** Its shared database: dropped, or kept and why; null when it held none. */
  sharedDatabase: { name: string; dropped: boolean; reason?: string | undefined } | null
  /** The kit's tenant templates on it (`<TENANT_DB_PREFIX>_tpl_*`): dropped, or kept and why. */
  templates: { dropped: string[]; kept: string[]; reason?: string | undefined }
}

/** A one-connection client for one of these checks or drops, named apart in pg_stat_activity. */
const oneShot = (url: string): Sql => connect(url, { max: 1, connectTimeoutMs: 5000, applicationName: 'tenantkit-servers' })

/**
 * The Postgres cluster a URL reaches: its system identifier, the same for every host string, database and
 * role on one cluster. undefined when it does not answer.
 */
async function clusterOf(url: string): Promise<string | undefined> {
  const sql = oneShot(url)
  try {
    return await clusterId(sql)
  } finally {
    await sql.end({ timeout: 1 })
  }
}

/** The system identifier of the cluster a client is on; undefined when it does not answer. */
async function clusterId(sql: Sql): Promise<string | undefined> {
  try {
    const [row] = await sql<{ id: string }[]>`select system_identifier::text as id from pg_control_system()`
    return row?.id
  } catch {
    return undefined
  }
}

/**
 * The clusters of every other server row and of the host database, with the databases each is known to use
 * there (its shared database, the host database). `unknown`: one of them did not answer.
 */
async function otherClusters(deps: ServerAdminDeps, server: DbServerInfo): Promise<{ databases: Set<string>; clusters: Set<string>; unknown: boolean }> {
  const others: { url: string; database: string | undefined }[] = []
  for (const other of await deps.servers.list()) {
    if (other.name === server.name) continue
    others.push({ url: withDatabase(other.adminUrl, 'postgres'), database: other.sharedUrl ? sharedDatabaseName(other.sharedUrl) : undefined })
  }
  if (deps.config.databaseUrl) others.push({ url: deps.config.databaseUrl, database: decodeURIComponent(new URL(deps.config.databaseUrl).pathname.slice(1)) })
  const ids = await Promise.all(others.map((o) => clusterOf(o.url)))
  const found = { databases: new Set<string>(), clusters: new Set<string>(), unknown: false }
  ids.forEach((id, i) => {
    if (id === undefined) found.unknown = true
    else {
      found.clusters.add(id)
      if (others[i]!.database) found.databases.add(`${id}/${others[i]!.database}`)
    }
  })
  return found
}

/** Rows in a shared database, every tenant's: as its owner, past the forced row-level security (in a transaction rolled back). */
async function sharedRows(owner: Sql): Promise<number> {
  const tables = await sharedTables(owner)
  let rows = 0
  const rollback = new Error('rollback')
  await owner
    .begin(async (tx) => {
      await tx`set local lock_timeout = '5s'`
      for (const t of tables) {
        await tx.unsafe(`alter table ${quoteIdent(t)} no force row level security`)
        const [r] = await tx.unsafe<{ n: number }[]>(`select count(*)::int as n from ${quoteIdent(t)}`)
        rows += r!.n
      }
      throw rollback
    })
    .catch((err: unknown) => {
      if (err !== rollback) throw err
    })
  return rows
}

/** How long a removal waits for other processes to close their connections to the shared database it drops. */
const DROP_WAIT_MS = 10_000

const NOT_OURS = new Set(['postgres', 'template0', 'template1'])

/**
 * Remove a draining, empty server (see the top of this file). 404 SERVER_NOT_FOUND, 409 SERVER_NOT_REMOVABLE
 * (the default), 409 SERVER_NOT_DRAINING, 409 SERVER_NOT_EMPTY (details.holds), 503 SERVER_UNREACHABLE (its
 * shared database could not be checked).
 */
export async function removeServer(deps: ServerAdminDeps, name: string): Promise<RemovedServer> {
  const { servers } = deps
  const server = await servers.get(name)
  if (name === DEFAULT_DB_SERVER)
    throw conflict('SERVER_NOT_REMOVABLE', `database server "${name}" is the config's (TENANT_DATABASE_URL / DATABASE_URL): it cannot be removed`)
  if (server.status !== 'draining')
    throw conflict('SERVER_NOT_DRAINING', `database server "${name}" is ${server.status}: drain it first (its tenants move elsewhere), then remove it`)
  const held = (await holdings(deps.host, name)).get(name) ?? { ...EMPTY }
  if (held.databases || held.shared || held.moving) throw notEmpty(name, { ...held, sharedRows: 0 })

  // One admin connection to it for every check and drop below.
  const admin = oneShot(withDatabase(server.adminUrl, 'postgres'))
  try {
    // Which Postgres it is, and which others are there, asked while every other server's row is still listed.
    const [here, others] = await Promise.all([clusterId(admin), otherClusters(deps, server)])
    const shared = server.sharedUrl ? await checkShared(admin, server, here, others) : undefined

    if (!(await servers.delete(name))) {
      await servers.get(name) // 404 when removed meanwhile
      throw conflict('SERVER_NOT_DRAINING', `database server "${name}" is no longer draining`)
    }
    deps.logger.info({ server: name }, 'database server removed')
    await announceRemoval(deps, name)

    const sharedDatabase = shared ? await dropShared(deps, admin, name, shared) : null
    return { name, sharedDatabase, templates: await dropTemplates(deps, admin, name, here, others) }
  } finally {
    await admin.end({ timeout: 1 })
  }
}

async function dropShared(deps: ServerAdminDeps, admin: Sql, server: string, shared: { name: string; drop: boolean; reason?: string }): Promise<RemovedServer['sharedDatabase']> {
  if (!shared.drop) return { name: shared.name, dropped: false, reason: shared.reason }
  try {
    // Every process closes its pools there on the announcement; the data role's connections are not the
    // admin role's to end (with (force) needs that), so wait for them to go first.
    const deadline = performance.now() + DROP_WAIT_MS
    while (performance.now() < deadline) {
      const [open] = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = ${shared.name}`
      if (!open!.n) break
      await sleep(100)
    }
    await admin.unsafe(`drop database if exists ${quoteIdent(shared.name)} with (force)`)
    deps.logger.info({ server, database: shared.name }, 'shared database of a removed server dropped')
    return { name: shared.name, dropped: true }
  } catch (err) {
    deps.logger.warn({ server, database: shared.name, err }, 'dropping the shared database of a removed server failed')
    return { name: shared.name, dropped: false, reason: `dropping it failed (drop it by hand once its connections are gone): ${errorMessage(err)}` }
  }
}

/**
 * This deployment's tenant templates on a removed server, dropped unless another server row or the host
 * database is on the same Postgres (they would use them), or that can't be known (a server did not answer).
 */
async function dropTemplates(
  deps: ServerAdminDeps,
  admin: Sql,
  server: string,
  here: string | undefined,
  others: Awaited<ReturnType<typeof otherClusters>>,
): Promise<RemovedServer['templates']> {
  let names: string[]
  try {
    const ours = `^${deps.config.tenantDbPrefix}_tpl_` // the prefix is [a-z0-9_] (config), nothing to escape
    names = (await admin<{ datname: string }[]>`select datname from pg_database where datname ~ ${ours} order by datname`).map((r) => r.datname)
  } catch (err) {
    return { dropped: [], kept: [], reason: `they could not be listed: ${errorMessage(err)}` }
  }
  if (names.length === 0) return { dropped: [], kept: [] }
  if (here === undefined || others.unknown)
    return { dropped: [], kept: names, reason: 'a server did not answer, so whether another one uses the same Postgres is unknown' }
  if (others.clusters.has(here)) return { dropped: [], kept: names, reason: 'another server or the host database is on the same Postgres' }
  const result: RemovedServer['templates'] = { dropped: [], kept: [] }
  for (const db of names) {
    try {
      // A template database can't be dropped while it is one.
      await admin.unsafe(`alter database ${quoteIdent(db)} is_template false`)
      await admin.unsafe(`drop database if exists ${quoteIdent(db)} with (force)`)
      result.dropped.push(db)
    } catch (err) {
      deps.logger.warn({ server, database: db, err }, 'dropping a template of a removed server failed')
      result.kept.push(db)
      result.reason ??= `dropping failed (drop by hand): ${errorMessage(err)}`
    }
  }
  if (result.dropped.length) deps.logger.info({ server, databases: result.dropped }, 'templates of a removed server dropped')
  return result
}

function notEmpty(name: string, holds: ServerHoldings & { sharedRows: number }): AppError {
  const parts = [
    holds.databases && `${holds.databases} tenant database(s)`,
    holds.shared && `${holds.shared} shared tenant(s)`,
    holds.deleted && `(${holds.deleted} of them soft-deleted: restore and move them, or delete them with --hard)`,
    holds.moving && `${holds.moving} move(s) in flight`,
    holds.sharedRows && `${holds.sharedRows} row(s) in its shared database`,
  ].filter(Boolean)
  return new AppError(409, 'SERVER_NOT_EMPTY', `database server "${name}" still holds ${parts.join(', ')}: drain it (tenants servers drain ${name}) and let the moves finish`, {
    holds,
  })
}

/** The server's shared database: refuses (409) when it holds rows; says whether removing the server may drop it. */
async function checkShared(
  admin: Sql,
  server: DbServerInfo,
  cluster: string | undefined,
  others: Awaited<ReturnType<typeof otherClusters>>,
): Promise<{ name: string; drop: boolean; reason?: string }> {
  const dbName = sharedDatabaseName(server.sharedUrl!)
  // The same database registered elsewhere (another server row on the same Postgres, or the host database): never dropped.
  const usedElsewhere = cluster !== undefined && others.databases.has(`${cluster}/${dbName}`)

  let owner: Sql | undefined
  try {
    const [found] = await admin<{ mark: string | null }[]>`select shobj_description(oid, 'pg_database') as mark from pg_database where datname = ${dbName}`
    if (!found) return { name: dbName, drop: false, reason: 'it does not exist' }
    owner = oneShot(withDatabase(server.adminUrl, dbName))
    const rows = await sharedRows(owner)
    if (rows) throw notEmpty(server.name, { ...EMPTY, sharedRows: rows })
    if (NOT_OURS.has(dbName) || usedElsewhere) return { name: dbName, drop: false, reason: 'another server or the host database uses it' }
    if (others.unknown) return { name: dbName, drop: false, reason: 'a server did not answer, so whether another one uses it is unknown' }
    if (found.mark !== SHARED_DATABASE_MARK) return { name: dbName, drop: false, reason: 'tenantkit did not create it' }
    return { name: dbName, drop: true }
  } catch (err) {
    if (err instanceof AppError) throw err
    if (isDependencyDown(err))
      throw unavailable('SERVER_UNREACHABLE', `database server "${server.name}" did not answer: its shared database ${dbName} could not be checked (${errorMessage(err)})`)
    throw err
  } finally {
    await owner?.end({ timeout: 1 })
  }
}

/**
 * Put a pooler in front of a server's database tenants (`poolerUrl`, postgres://host:port), or take it away
 * (null), and reroute every process. 400 INVALID_SERVER when the URL is malformed or nothing accepts a
 * connection there (a wrong pooler would fail every tenant of the server).
 */
export async function setServerPooler(deps: ServerAdminDeps, name: string, poolerUrl: string | null): Promise<{ name: string; pooler: string | null }> {
  await deps.servers.get(name) // 404 SERVER_NOT_FOUND before anything is checked
  if (poolerUrl !== null) await checkPooler(poolerUrl)
  const server = await deps.servers.setPooler(name, poolerUrl)
  rerouted(deps, name)
  await announce(deps, { rerouted: name }, 'pooler change not announced: other processes take the new route as their catalog entries expire')
  return { name, pooler: server.poolerUrl === null ? null : hostOf(server.poolerUrl) }
}

/** A pooler URL as a server takes it (servers.ts validatePoolerUrl) where something accepts a TCP connection within 3 s; else 400 INVALID_SERVER. */
export async function checkPooler(url: string): Promise<void> {
  validatePoolerUrl(url)
  const { hostname, port } = new URL(url)
  const host = hostname.replace(/^\[|\]$/g, '')
  await new Promise<void>((resolve, reject) => {
    const socket = createConnection({ host, port: Number(port || 5432), timeout: 3000 })
    const fail = (why: string) => {
      socket.destroy()
      reject(badRequest('INVALID_SERVER', `the pooler at ${hostOf(url)} did not accept a connection (${why})`))
    }
    socket.once('connect', () => {
      socket.end()
      resolve()
    })
    socket.once('timeout', () => fail('timed out'))
    socket.once('error', (err) => fail(errorMessage(err)))
  })
}

/** This process: the server's tenants are looked up again and their pools reopened on the next lease. */
function rerouted(deps: Pick<ServerAdminDeps, 'catalog' | 'pools' | 'logger'>, name: string): void {
  deps.catalog.dropServer(name)
  deps.pools.evictServer(name).catch((err: unknown) => deps.logger.warn({ err, server: name }, 'closing the pools of a rerouted server failed'))
}

/** Close what this process holds on a removed server, and have every other process do the same. */
async function announceRemoval(deps: ServerAdminDeps, name: string): Promise<void> {
  await forgetServer(deps, name)
  await announce(deps, { removed: name }, 'server removal not announced: other processes close their idle pools there on their own')
}

/** What the servers channel carries: a server removed, or a server's route (its pooler) changed. */
type ServerChange = { removed: string } | { rerouted: string }

/**
 * Tell every process about a change (this one hears it too and applies it again: both are idempotent, and
 * this one already has, in case the bus is down). Not heard: warn with what happens instead.
 */
async function announce(deps: Pick<ServerAdminDeps, 'invalidations' | 'config' | 'logger'>, change: ServerChange, ifNotHeard: string): Promise<void> {
  const server = 'removed' in change ? change.removed : change.rerouted
  await deps.invalidations.publish(serversChannel(deps.config.redisPrefix), JSON.stringify(change)).catch((err: unknown) => deps.logger.warn({ err, server }, ifNotHeard))
}

async function forgetServer(deps: Pick<ServerAdminDeps, 'servers' | 'pools' | 'logger'>, name: string): Promise<void> {
  await Promise.all([deps.servers.forget(name), deps.pools.evictServer(name)]).catch((err: unknown) =>
    deps.logger.warn({ err, server: name }, 'closing the pools of a removed server failed'),
  )
}

/** Every process: on a server's removal announced by any process, close the pools held on it; on a pooler change, reroute them. */
export function listenForServerChanges(
  bus: Pick<InvalidationBus, 'listen'>,
  deps: Pick<ServerAdminDeps, 'servers' | 'pools' | 'catalog' | 'logger'> & { channel: string },
): Subscription {
  return bus.listen(deps.channel, {
    message(message) {
      let change: { removed?: unknown; rerouted?: unknown } = {} // any JSON: checked field by field below
      try {
        change = JSON.parse(message) as typeof change
      } catch {}
      if (typeof change.removed === 'string' && change.removed !== DEFAULT_DB_SERVER) void forgetServer(deps, change.removed)
      if (typeof change.rerouted === 'string') rerouted(deps, change.rerouted)
    },
    // A removal missed while disconnected: the pools there idle out on their own (nothing is placed there);
    // a pooler change: catalog entries expire within CATALOG_TTL_S and the pools follow their records.
    reconnected() {},
  })
}
