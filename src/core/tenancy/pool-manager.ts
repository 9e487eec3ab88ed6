/**
 * One small postgres.js pool per tenant database, kept in an LRU, under a connection budget per
 * Postgres server (each server has its own max_connections: core_db_servers.max_connections, else
 * POOL_CONNECTION_BUDGET).
 *
 * The budget counts connection SLOTS: a pool of max N reserves N slots on its server from the moment it
 * opens until its sql.end() has finished, so the connections this process holds on a server can never
 * exceed that server's budget, however many tenants are busy. When a new pool does not fit, the
 * least-recently-used pools with no lease on the same server are closed; when none can be, callers wait
 * in FIFO order per server (a full server never holds up another server's tenants) and, after
 * acquireTimeoutMs, get a 503 POOL_EXHAUSTED rather than Postgres' `53300 too many clients`.
 * While other tenants wait on a full server, a tenant database's pool opens with one slot (a long tail of
 * cold tenants then shares the budget one connection each) and grows to its full size once there is room.
 *
 * A tenant whose catalog row has a pooler URL (PgBouncer in transaction pooling mode, docs/scaling.md) is
 * reached through it, with what such a pooler can carry: statements unnamed unless POOLER_PREPARED_STATEMENTS
 * (PgBouncer >= 1.21 with max_prepared_statements; before that a named statement prepared in one transaction
 * is missing from the server connection the next one lands on), and no startup parameters PgBouncer refuses
 * (statement_timeout: set it on the role behind the pooler). A moving tenant's read-only pool goes past the
 * pooler, to its direct URL: default_transaction_read_only is a startup parameter PgBouncer refuses too.
 */
import { drizzle } from 'drizzle-orm/postgres-js'
import type { Logger } from 'pino'
import { DEFAULT_DB_SERVER } from '../../../drizzle/host/schema.js'
import * as tenantSchema from '../../../drizzle/tenant/schema.js'
import { type ConnectOptions, connect, type Sql } from '../db/connect.js'
import { AppError, unavailable } from '../lib/errors.js'
import { createScopedClient, createUnitLanes, laneCount, type ScopedClientState, type UnitLanes } from './shared/scoped-client.js'
import type { PoolManager, PoolStats, ServerPoolStats, TenantDb, TenantLease, TenantRecord } from './types.js'

export type PoolTarget = Pick<TenantRecord, 'id' | 'dbUrl' | 'poolerUrl' | 'maxConnections'> & Partial<Pick<TenantRecord, 'isolation' | 'moving' | 'server'>>

/** The server a target's budget is counted on: its catalog row's, else the default server. */
export const serverOfTarget = (t: Pick<PoolTarget, 'server'>) => t.server ?? DEFAULT_DB_SERVER

/**
 * A moving tenant's URL: the same database with `default_transaction_read_only=on` (and its own
 * application_name) as startup parameters (postgres.js sends URL parameters it does not know as such), so every transaction on its
 * connections is read-only and a write fails with 25006 (answered 503 TENANT_MOVING). A different URL
 * is a different pool: a database tenant's read-write pool drains and closes as for any URL change;
 * shared tenants on the move share one read-only pool of the shared database.
 */
export function readOnlyUrl(url: string): string {
  const u = new URL(url)
  u.searchParams.set('default_transaction_read_only', 'on')
  // Named apart, so a move can tell read-only connections from the read-write ones it waits out (move/drain.ts).
  u.searchParams.set('application_name', READ_ONLY_APPLICATION)
  return u.toString()
}

/** application_name of a moving tenant's read-only connections. */
export const READ_ONLY_APPLICATION = 'tenantkit-readonly'

/**
 * The pool key of a shared database: every shared tenant on it leases this one pool (its handle, a
 * scoped client over the pool, is per tenant). Database tenants' pools are keyed by tenant id.
 */
export const sharedPoolKey = (url: string) => `shared:${url}`
/** Shared tenants' handles kept per shared pool (cheap to rebuild; bounded so the map cannot grow without end). */
const MAX_SHARED_HANDLES = 10_000

export interface PoolManagerDeps {
  maxPerTenant: number
  maxTenants: number
  idleTimeoutS: number
  /** Slots per server when serverBudget names none (POOL_CONNECTION_BUDGET). */
  connectionBudget: number
  /** A server's own budget (core_db_servers.max_connections), read on every grant decision; undefined: connectionBudget. */
  serverBudget?: (server: string) => number | undefined
  acquireTimeoutMs: number
  logger?: Pick<Logger, 'warn' | 'error'>
  /** application_name of tenant connections (default 'tenantkit-tenant'). */
  applicationName?: string
  /** Connection options of every tenant pool (timeouts); see db/connect.ts. */
  connectOptions?: Pick<ConnectOptions, 'connectTimeoutMs' | 'statementTimeoutMs'>
  /** Connections of a shared database's pool (SHARED_POOL_MAX); default maxPerTenant. */
  sharedMax?: number
  /** How long a POOL_EXHAUSTED timeout with no grant since keeps the manager "starved" (readiness). Default 10 s. */
  starvedWindowMs?: number
  /** The tenants' poolers keep named prepared statements across transactions (POOLER_PREPARED_STATEMENTS; PgBouncer >= 1.21). Default false. */
  poolerPreparedStatements?: boolean
}

interface Pool {
  /** The tenant id, or sharedPoolKey(url) for a shared database's pool. */
  tenantId: string
  /** The server whose budget its slots count against. */
  server: string
  /** A shared database's pool: leases get a per-tenant scoped handle (handles), never `db`. */
  shared: boolean
  handles: Map<string, { db: TenantDb; state: ScopedClientState }>
  /** A shared pool's statement lanes (connections carrying the tenants' single-statement units). */
  lanes: UnitLanes | undefined
  url: string
  /** Slots reserved from the budget (the pool's max). */
  size: number
  sql: Sql
  db: TenantDb
  leases: number
  peakLeases: number
  lastUsed: number
  /** Out of the LRU; closes as soon as its last lease ends. */
  retiring: boolean
  ending: boolean
  closed: Promise<void>
  markClosed: () => void
}

interface Waiter {
  tenant: PoolTarget
  resolve: (pool: Pool) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
  /** Removes the abort listener (the waiter was served or timed out). */
  detach: () => void
}

/** The caller gave up (its HTTP request closed) while waiting for budget: nobody reads this answer. */
export const clientClosed = () => new AppError(499, 'CLIENT_CLOSED_REQUEST', 'the client closed the request while it waited for a tenant connection')

// Errors meaning "this pool can never work" (database dropped, credentials or host wrong): close it at once
// so its slots go back to the budget instead of waiting for the idle timer.
const UNREACHABLE = new Set(['3D000', '28P01', '28000', 'ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'CONNECT_TIMEOUT'])

function errorCodes(err: unknown): string[] {
  const codes: string[] = []
  // drizzle wraps driver errors in DrizzleQueryError; the SQLSTATE is on the cause.
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (code !== undefined) codes.push(String(code))
  }
  return codes
}

export const isUnreachable = (err: unknown) => errorCodes(err).some((c) => UNREACHABLE.has(c))

export function createPoolManager(deps: PoolManagerDeps): PoolManager {
  const { maxPerTenant, maxTenants, connectionBudget: defaultBudget, acquireTimeoutMs, logger } = deps
  const budgetOf = (server: string) => Math.max(1, deps.serverBudget?.(server) ?? defaultBudget)
  const idleMs = deps.idleTimeoutS * 1000
  /** Live pools by tenant id; Map order is the LRU order (oldest first). */
  const pools = new Map<string, Pool>()
  /** Pools out of the LRU whose slots are still reserved until they finish closing. */
  const retired = new Set<Pool>()
  const queue: Waiter[] = []
  /** Slots reserved per server. */
  const reserved = new Map<string, number>()
  const reservedOn = (server: string) => reserved.get(server) ?? 0
  const reserve = (server: string, n: number) => {
    const left = reservedOn(server) + n
    if (left === 0) reserved.delete(server)
    else reserved.set(server, left)
  }
  /** Per server: POOL_EXHAUSTED timeouts since its last grant (what its readiness line reports). */
  const serverTimeouts = new Map<string, { first: number; last: number }>()
  let closed = false
  // Readiness: "starved" while POOL_EXHAUSTED timeouts keep coming and nothing was granted since the first of them.
  const starvedWindowMs = deps.starvedWindowMs ?? 10_000
  let firstTimeoutSinceGrant: number | undefined
  let lastTimeout = 0
  const granted = (server: string) => {
    firstTimeoutSinceGrant = undefined
    serverTimeouts.delete(server)
  }

  const sweep = setInterval(
    () => {
      const now = Date.now()
      for (const pool of pools.values()) if (pool.leases === 0 && now - pool.lastUsed >= idleMs) retire(pool)
    },
    Math.max(100, Math.min(idleMs / 2, 10_000)),
  )
  sweep.unref()

  // A moving tenant's read-only pool is direct: a transaction pooler refuses its startup parameter.
  const urlOf = (t: PoolTarget) => (t.moving ? readOnlyUrl(t.dbUrl) : t.poolerUrl || t.dbUrl)
  const direct = { ...deps.connectOptions }
  // Through a pooler: no startup parameter PgBouncer refuses (08P01 "unsupported startup parameter"), and
  // unnamed statements unless it keeps named ones across transactions.
  const viaPooler = { ...deps.connectOptions, statementTimeoutMs: undefined, prepare: deps.poolerPreparedStatements === true }
  const isShared = (t: PoolTarget) => t.isolation === 'shared'
  const keyOf = (t: PoolTarget) => (isShared(t) ? sharedPoolKey(urlOf(t)) : t.id)
  const sizeOf = (t: PoolTarget) => {
    const budget = budgetOf(serverOfTarget(t))
    return isShared(t)
      ? Math.max(1, Math.min(deps.sharedMax ?? maxPerTenant, budget))
      : Math.max(1, Math.min(maxPerTenant, t.maxConnections ?? maxPerTenant, budget))
  }

  /** A shared tenant's handle on its shared pool: drizzle over a client that scopes every statement to the tenant. */
  function handleOf(pool: Pool, tenantId: string): TenantDb {
    if (!pool.shared) return pool.db
    let handle = pool.handles.get(tenantId)
    if (handle) {
      pool.handles.delete(tenantId) // most recently used last
    } else {
      const state: ScopedClientState = { readOnly: false }
      handle = { db: drizzle(createScopedClient(pool.sql, tenantId, pool.lanes, state), { schema: tenantSchema }) as TenantDb, state }
      if (pool.handles.size >= MAX_SHARED_HANDLES) pool.handles.delete(pool.handles.keys().next().value!)
    }
    pool.handles.set(tenantId, handle)
    return handle.db
  }

  function open(t: PoolTarget, url: string, size: number): Pool {
    // postgres.js connects lazily: no connection exists until the first query, so this never blocks.
    const options = t.poolerUrl && url === t.poolerUrl ? viaPooler : direct
    const sql = connect(url, { ...options, max: size, applicationName: deps.applicationName ?? 'tenantkit-tenant' })
    let markClosed = () => {}
    const closed = new Promise<void>((resolve) => {
      markClosed = resolve
    })
    const key = keyOf(t)
    const pool: Pool = {
      tenantId: key,
      server: serverOfTarget(t),
      shared: isShared(t),
      handles: new Map(),
      // Half the connections carry single statements; the rest serve drizzle transactions (pool.begin).
      lanes: isShared(t) && laneCount(size) >= 1 ? createUnitLanes(sql, laneCount(size)) : undefined,
      url,
      size,
      sql,
      db: drizzle(sql, { schema: tenantSchema }),
      leases: 0,
      peakLeases: 0,
      lastUsed: Date.now(),
      retiring: false,
      ending: false,
      closed,
      markClosed,
    }
    reserve(pool.server, size)
    pools.set(key, pool)
    return pool
  }

  function take(pool: Pool): Pool {
    granted(pool.server)
    pool.leases++
    pool.peakLeases = Math.max(pool.peakLeases, pool.leases)
    pool.lastUsed = Date.now()
    pools.delete(pool.tenantId) // move to the most-recently-used end
    pools.set(pool.tenantId, pool)
    return pool
  }

  function giveBack(pool: Pool): void {
    pool.leases--
    pool.lastUsed = Date.now()
    if (pool.leases > 0) return
    if (pool.retiring) end(pool)
    else if (queue.length) pump() // an idle pool can now be evicted for a waiter
  }

  function retire(pool: Pool): void {
    if (pool.retiring) return
    pool.retiring = true
    if (pools.get(pool.tenantId) === pool) pools.delete(pool.tenantId)
    retired.add(pool)
    if (pool.leases === 0) end(pool)
  }

  function end(pool: Pool): void {
    if (pool.ending) return
    pool.ending = true
    pool.lanes?.close()
    pool.sql
      .end({ timeout: 5 })
      .catch((err) => logger?.warn({ err, tenantId: pool.tenantId }, 'pool-manager: error while closing a tenant pool'))
      .finally(() => {
        retired.delete(pool)
        reserve(pool.server, -pool.size)
        pool.markClosed()
        pump()
      })
  }

  /** Whether a waiter for another pool than `head`'s is queued for `server`. */
  function othersWaiting(head: Waiter, server: string): boolean {
    const key = keyOf(head.tenant)
    for (const w of queue) if (w !== head && keyOf(w.tenant) !== key && serverOfTarget(w.tenant) === server) return true
    return false
  }

  /**
   * A pool opened small under contention whose every connection is now in use: when its server has room
   * for the full size and nobody waits there, it is replaced by a full-size pool (the small one drains and
   * closes). Returns the new pool, or undefined to keep the live one.
   */
  function grow(live: Pool, t: PoolTarget): Pool | undefined {
    if (live.leases < live.size || queue.length > 0) return undefined
    const full = sizeOf(t)
    if (full <= live.size || reservedOn(live.server) + full > budgetOf(live.server)) return undefined
    retire(live)
    return open(t, live.url, full)
  }

  /** A lease on the tenant's open pool for `url` (grown first when it opened small and there is room now), if there is one. */
  function grantLive(t: PoolTarget, url: string): Pool | undefined {
    const live = pools.get(keyOf(t))
    return live && live.url === url ? take(grow(live, t) ?? live) : undefined
  }

  /** Slots on `server` that come back without anyone releasing a lease: pools already closing. */
  function slotsBeingFreed(server: string): number {
    let n = 0
    for (const pool of retired) if (pool.ending && pool.server === server) n += pool.size
    return n
  }

  /** The least recently used pool with no lease (on `server` when given). */
  function lruIdle(server?: string): Pool | undefined {
    for (const pool of pools.values()) if (pool.leases === 0 && (server === undefined || pool.server === server)) return pool
    return undefined
  }

  /**
   * Serve waiters in FIFO order per server while its budget allows, closing idle pools on that server to
   * make room. A server that can't serve its first waiter is skipped for the rest of the pass, so its
   * later waiters keep their order and other servers' waiters are not held up behind it.
   */
  function pump(): void {
    const blocked = new Set<string>()
    let i = 0
    while (i < queue.length) {
      const head = queue[i]!
      const server = serverOfTarget(head.tenant)
      if (blocked.has(server)) {
        i++
        continue
      }
      const url = urlOf(head.tenant)
      const live = pools.get(keyOf(head.tenant))
      if (live && live.url === url) {
        settle(head, take(live))
        continue
      }
      // The tenant moved (new URL, pooler or server): the old pool drains and closes, a new one opens.
      if (live) retire(live)
      const full = sizeOf(head.tenant)
      // Contended (other tenants' requests wait on this server): open a one-slot pool. Under a long tail of
      // cold tenants each request holds one connection, so pools reserving their full size would leave most
      // of the budget reserved and unused (budget 40, pools of 5: 8 tenants served at once instead of 40).
      // A pool that gets busy grows to its full size once there is room and nobody waits (grow()).
      const small = full > 1 && !isShared(head.tenant) && othersWaiting(head, server)
      const size = small ? 1 : full
      const slotsShort = reservedOn(server) + size - budgetOf(server)
      if (slotsShort <= 0 && pools.size < maxTenants) {
        const pool = open(head.tenant, url, size)
        settle(head, take(pool))
        // Waiters further back for the same tenant share the new pool instead of queueing behind others.
        for (const w of [...queue]) if (keyOf(w.tenant) === pool.tenantId && urlOf(w.tenant) === url) settle(w, take(pool))
        continue
      }
      // Short of slots: only an idle pool on the same server makes room. At the pool count limit: any idle pool.
      const victim = slotsShort > 0 ? lruIdle(server) : lruIdle()
      if (victim && (slotsShort > slotsBeingFreed(server) || pools.size >= maxTenants)) {
        retire(victim)
        continue
      }
      blocked.add(server) // wait for a lease to end or a closing pool to finish
      i++
    }
  }

  function settle(w: Waiter, pool: Pool): void {
    const at = queue.indexOf(w)
    if (at !== -1) queue.splice(at, 1)
    clearTimeout(w.timer)
    w.detach()
    w.resolve(pool)
  }

  /** Leave the queue without a pool (timed out, or the caller's request closed); the head may change. */
  function drop(w: Waiter, err: Error): void {
    const at = queue.indexOf(w)
    if (at === -1) return
    queue.splice(at, 1)
    clearTimeout(w.timer)
    w.detach()
    w.reject(err)
    pump()
  }

  function acquirePool(tenant: PoolTarget | null | undefined, signal?: AbortSignal): Promise<Pool> {
    if (!tenant?.id) return Promise.reject(new Error('tenant database requested without a tenant'))
    if (closed) return Promise.reject(unavailable('POOL_CLOSED', 'the tenant pool manager is shut down'))
    const url = urlOf(tenant)
    if (!url) return Promise.reject(new Error(`tenant ${tenant.id} has no database URL`))
    if (signal?.aborted) return Promise.reject(clientClosed())
    const live = grantLive(tenant, url)
    if (live) return Promise.resolve(live)
    return new Promise<Pool>((resolve, reject) => {
      const onAbort = () => drop(waiter, clientClosed())
      const waiter: Waiter = {
        tenant,
        resolve,
        reject,
        timer: setTimeout(() => {
          const now = Date.now()
          firstTimeoutSinceGrant ??= now
          lastTimeout = now
          const server = serverOfTarget(tenant)
          serverTimeouts.set(server, { first: serverTimeouts.get(server)?.first ?? now, last: now })
          drop(waiter, new AppError(503, 'POOL_EXHAUSTED', `no tenant database connection became free within ${acquireTimeoutMs} ms; try again shortly`))
        }, acquireTimeoutMs),
        detach: () => signal?.removeEventListener('abort', onAbort),
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      queue.push(waiter)
      pump()
    })
  }

  function leaseOf(pool: Pool, tenantId: string): TenantLease {
    let released = false
    return {
      db: handleOf(pool, tenantId),
      release() {
        if (released) return
        released = true
        giveBack(pool)
      },
    }
  }

  return {
    tryAcquire(tenant) {
      if (closed || !tenant?.id) return undefined
      const url = urlOf(tenant)
      if (!url) return undefined
      const live = grantLive(tenant, url)
      return live ? leaseOf(live, tenant.id) : undefined
    },

    async acquire(tenant, opts) {
      const lease = leaseOf(await acquirePool(tenant, opts?.signal), tenant.id)
      // Granted in the same turn the caller gave up (abort raced the grant): the slot goes straight back.
      if (opts?.signal?.aborted) {
        lease.release()
        throw clientClosed()
      }
      return lease
    },

    async withTenant(tenant, fn) {
      const pool = await acquirePool(tenant)
      const lease = leaseOf(pool, tenant.id)
      try {
        return await fn(lease.db)
      } catch (err) {
        if (isUnreachable(err)) {
          logger?.warn({ err, tenantId: pool.tenantId }, 'pool-manager: tenant database unreachable; closing its pool')
          retire(pool)
        }
        throw err
      } finally {
        lease.release()
      }
    },

    async evict(tenantId, opts) {
      const waits: Promise<void>[] = []
      // A shared tenant: forget its handle (the shared pool stays for the others); evict(sharedPoolKey(url)) closes that pool.
      for (const pool of pools.values()) {
        if (!pool.shared) continue
        const handle = pool.handles.get(tenantId)
        // Leases still holding it (requests begun before the move) go on read-only.
        if (handle && opts?.readOnly) handle.state.readOnly = true
        pool.handles.delete(tenantId)
      }
      const live = pools.get(tenantId)
      if (live) retire(live)
      for (const pool of retired) if (pool.tenantId === tenantId) waits.push(pool.closed)
      await Promise.all(waits)
    },

    async evictServer(server) {
      for (const pool of [...pools.values()]) if (pool.server === server) retire(pool)
      await Promise.all([...retired].filter((pool) => pool.server === server).map((pool) => pool.closed))
    },

    stats(): PoolStats {
      const now = Date.now()
      const servers: Record<string, ServerPoolStats> = {}
      const of = (server: string) => {
        servers[server] ??= {
          openPools: 0,
          reservedConnections: reservedOn(server),
          openConnections: 0,
          waiters: 0,
          leases: 0,
          budget: budgetOf(server),
          starved: false,
        }
        return servers[server]
      }
      let openPools = 0
      let openConnections = 0
      let leases = 0
      for (const pool of [...pools.values(), ...retired]) {
        const s = of(pool.server)
        openPools++
        s.openPools++
        // postgres.js opens connections lazily, one per concurrently running query, up to max, and keeps
        // them until the pool ends; it exposes no count. Peak concurrent leases is exact when a lease runs
        // one query at a time (withTenant's usual shape), a lower bound otherwise.
        const open = Math.min(pool.size, pool.peakLeases)
        openConnections += open
        s.openConnections += open
        leases += pool.leases
        s.leases += pool.leases
      }
      for (const w of queue) of(serverOfTarget(w.tenant)).waiters++
      for (const [server, t] of serverTimeouts) if (now - t.last < starvedWindowMs) of(server).starved = true
      let reservedConnections = 0
      for (const n of reserved.values()) reservedConnections += n
      const starved = firstTimeoutSinceGrant !== undefined && now - lastTimeout < starvedWindowMs
      return { openPools, reservedConnections, openConnections, waiters: queue.length, leases, budget: defaultBudget, starved, servers }
    },

    async close() {
      if (closed) return
      closed = true
      clearInterval(sweep)
      for (const w of queue.splice(0)) {
        clearTimeout(w.timer)
        w.detach()
        w.reject(unavailable('POOL_CLOSED', 'the tenant pool manager is shut down'))
      }
      const all = [...pools.values(), ...retired]
      pools.clear()
      // Shutdown does not wait for leases: running queries get 5 s, then their connections are destroyed.
      await Promise.all(
        all.map(async (pool) => {
          pool.retiring = true
          retired.add(pool)
          end(pool)
          await pool.closed
        }),
      )
    },
  }
}
