/**
 * A shared tenant's postgres.js client: the shared database's pool, where every statement runs as its own
 * transaction that first sets `app.tenant_id` (transaction-local), so row-level security shows it only
 * its tenant's rows. Handed to drizzle like any client, so a shared tenant's `TenantDb` has the same type
 * and the same API as a database tenant's; code reaching for `db.$client` gets this too.
 *
 * One statement = one network round trip: on one connection, `begin; select set_config(…)`, the
 * statement and `commit` are written together without waiting in between (postgres.js pipelines queries
 * sent to one connection). The pool manager gives the shared pool statement lanes (createUnitLanes):
 * reserved connections that carry several such units back to back; without lanes a unit reserves a
 * connection of its own. Either way a connection goes back to the pool only once every `commit` sent on
 * it has answered, so a pooled connection never carries a tenant id (LESSONS.md §3: transaction scope
 * only, never session).
 * A failing statement makes that `commit` a rollback. `begin(fn)` (drizzle's transaction) sets the tenant
 * first in the transaction, pipelined with fn's first statement.
 *
 * How: a postgres.js Query runs by calling its `handler` when first awaited; the tagged template and
 * `unsafe()` build the pool's own Query objects (so fragments, `.values()`, `.raw()` behave as usual)
 * with the handler swapped for the unit-of-work one below.
 */
import type postgres from 'postgres'
import type { Sql } from '../../db/connect.js'
import { isUuid } from '../../lib/uuid.js'

/** The setting row-level security reads; policies use nullif(current_setting('app.tenant_id', true), '')::uuid. */
export const TENANT_SETTING = 'app.tenant_id'

/** What postgres.js' Query exposes to its connection: not in its public types. */
interface QueryInternals {
  handler: (q: QueryInternals) => void
  executed: boolean
  resolve: (x: unknown) => void
  reject: (e: unknown) => void
  strings: readonly string[]
  options: { prepare?: boolean; simple?: boolean }
  /** postgres.js: set (then the query is sent again) when a prepared statement went stale. */
  retried: unknown
  /** postgres.js: a truthy value makes the connection skip the query. */
  cancelled: unknown
  execute(): unknown
}

const internals = (q: unknown) => q as QueryInternals

// The clients (and their transactions) of shared tenants' handles: see isSharedTenantDb.
const sharedClients = new WeakSet<object>()

/**
 * Whether a drizzle handle (a TenantDb, or a transaction of one) is a shared tenant's: its tables carry
 * tenant_id and their unique keys lead with it, so an ON CONFLICT target must name it first.
 */
export function isSharedTenantDb(db: object): boolean {
  const client = (db as { $client?: object }).$client ?? (db as { session?: { client?: object } }).session?.client
  return client !== undefined && sharedClients.has(client)
}

/** Statements naming the setting are refused: a handle must not move itself to another tenant. */
function refuseSettingChange(text: string): void {
  if (/app\.tenant_id/i.test(text)) throw new Error(`a shared tenant's handle may not read or set ${TENANT_SETTING} itself`)
}

/** `select set_config('app.tenant_id', '<id>', true)`; the id is checked to be a uuid, so inlining it is safe. */
/**
 * A unit's opening: `begin; set local app.tenant_id = '<id>'` (SET LOCAL is set_config(…, true) as a
 * utility statement: nothing for the planner, cheaper than a SELECT on every unit).
 */
export function beginTenantSql(tenantId: string): string {
  if (!isUuid(tenantId)) throw new Error(`not a tenant id: ${String(tenantId)}`)
  return `begin; set local ${TENANT_SETTING} = '${tenantId.toLowerCase()}'`
}

export function setTenantSql(tenantId: string): string {
  if (!isUuid(tenantId)) throw new Error(`not a tenant id: ${String(tenantId)}`)
  return `select set_config('${TENANT_SETTING}', '${tenantId.toLowerCase()}', true)`
}

/**
 * The client a shared tenant's drizzle instance is built over. Only statements and transactions are
 * offered: reserve/listen/notify/file/subscribe/end would escape the tenant scope or own the shared pool.
 */
/** undefined when the query succeeded, its error otherwise. */
const settled = (p: unknown) =>
  Promise.resolve(p as Promise<unknown>).then(
    () => undefined,
    (err: unknown) => err ?? new Error('query failed'),
  )

/**
 * Write begin + set_config, the statement and commit on one connection without waiting in between (one
 * round trip); settle the statement's promise once commit has answered. `send` is the connection's handler.
 *
 * The statement must be prepared (scoped() asks for it): postgres.js sends an unprepared statement with
 * parameters as Parse/Describe first and holds everything behind it on the connection until the answer
 * (its parameter types) is back, so the unit took three round trips and the lane carried one unit at a
 * time. Prepared, a connection describes each statement once; after that the three go out together.
 *
 * postgres.js re-sends a prepared statement that went stale (a migration changed what it returns) after
 * the answer to it: here that is after this unit's commit, into whatever unit the lane has sent since,
 * maybe another tenant's. So that re-send is refused (the statement is dropped from the connection's cache
 * by then) and the whole unit runs again once, in a transaction of its own.
 */
async function runUnit(send: QueryInternals['handler'], conn: postgres.ReservedSql, q: QueryInternals, opening: string): Promise<void> {
  const resolve = q.resolve
  const reject = q.reject
  for (let attempt = 1; ; attempt++) {
    const unit = await sendUnit(send, conn, q, opening)
    if (unit.stale && attempt === 1) continue
    // Whatever failed first is the answer; a statement that ran without its tenant set is never reported as a success.
    if (unit.openError !== undefined) reject(unit.openError)
    else if (unit.failure) reject(unit.failure.error)
    else if (unit.closeError !== undefined) reject(unit.closeError)
    else if (unit.rolledBack) reject(new Error('shared tenant statement: its transaction rolled back'))
    else if (unit.result) resolve(unit.result.value)
    else reject(new Error('shared tenant statement finished without an answer'))
    const broken = [unit.openError, unit.failure?.error, unit.closeError].find((e) =>
      /^CONNECTION_/.test(String((e as { code?: unknown } | undefined)?.code ?? '')),
    )
    if (broken) throw broken
    return
  }
}

interface SentUnit {
  openError: unknown
  closeError: unknown
  failure: { error: unknown } | undefined
  result: { value: unknown } | undefined
  /** Commit answered ROLLBACK: something in the transaction failed. */
  rolledBack: boolean
  /** The statement failed because its prepared form went stale (dropped from the cache since): worth one more unit. */
  stale: boolean
}

async function sendUnit(send: QueryInternals['handler'], conn: postgres.ReservedSql, q: QueryInternals, opening: string): Promise<SentUnit> {
  // A Query built on the connection carries its handler; ours are sent by hand, in order.
  const open = internals(conn.unsafe(opening))
  const close = internals(conn.unsafe('commit'))
  const unit: SentUnit = { openError: undefined, closeError: undefined, failure: undefined, result: undefined, rolledBack: false, stale: false }
  // The statement's answer arrives before commit's: hold it until the commit is known to have worked.
  q.resolve = (value) => {
    unit.result = { value }
  }
  q.reject = (error) => {
    unit.failure ??= { error }
  }
  // postgres.js' retry of a stale prepared statement sets `retried`, then sends it again unless it is cancelled.
  q.cancelled = null
  Object.defineProperty(q, 'retried', {
    configurable: true,
    get: () => undefined,
    set: (error: unknown) => {
      unit.failure ??= { error }
      unit.stale = true
      q.cancelled = true
    },
  })
  open.executed = true
  close.executed = true
  q.handler = send
  send(open)
  send(q)
  send(close)
  // Answers arrive in order; the caller frees the connection only after commit's, outside any transaction.
  unit.openError = await settled(open)
  let closed: unknown
  unit.closeError = await Promise.resolve(close as unknown as Promise<unknown>).then(
    (value) => {
      closed = value
      return undefined
    },
    (err: unknown) => err ?? new Error('commit failed'),
  )
  unit.rolledBack = (closed as { command?: unknown } | undefined)?.command === 'ROLLBACK'
  return unit
}

/**
 * The shared pool's statement lanes: connections reserved for tenant units, each carrying several units
 * back to back (each its own begin…commit, so they cannot see each other's tenant), the way postgres.js
 * pipelines plain queries on a busy connection. Without this every unit would reserve and release a
 * connection and wait for its own round trip alone. Drizzle transactions (pool.begin) use the connections
 * left over (laneCount).
 */
export interface UnitLanes {
  /** Run one statement as a unit opened by `opening` (beginTenantSql). */
  run(q: QueryInternals, opening: string): Promise<void>
  /** Give every lane's connection back to the pool (before the pool ends). */
  close(): void
}

interface Lane {
  conn: postgres.ReservedSql
  send: QueryInternals['handler']
  inflight: number
}

/**
 * How many of a shared pool's connections become lanes: half. The rest serve drizzle transactions
 * (pool.begin), so a transaction that opens another on the same handle still finds a connection.
 */
export const laneCount = (poolSize: number) => Math.floor(poolSize / 2)

export function createUnitLanes(pool: Sql, size: number, depth = 8): UnitLanes {
  const lanes: Lane[] = []
  let opening = 0
  let closed = false
  const waiting: (() => void)[] = []

  async function pick(): Promise<Lane> {
    for (;;) {
      if (closed) throw new Error('the shared pool is closing')
      let best: Lane | undefined
      for (const lane of lanes) if (!best || lane.inflight < best.inflight) best = lane
      if (best && best.inflight === 0) return take(best)
      if (lanes.length + opening < size) {
        opening++
        try {
          const conn = await pool.reserve()
          const lane = { conn, send: internals(conn.unsafe('')).handler, inflight: 0 }
          lanes.push(lane)
          return take(lane)
        } finally {
          opening--
        }
      }
      if (best && best.inflight < depth) return take(best)
      await new Promise<void>((resolve) => waiting.push(resolve))
    }
  }

  function take(lane: Lane): Lane {
    lane.inflight++
    return lane
  }

  function drop(lane: Lane): void {
    const at = lanes.indexOf(lane)
    if (at !== -1) lanes.splice(at, 1)
    lane.conn.release()
  }

  return {
    async run(q, opening) {
      let lane: Lane
      try {
        lane = await pick()
      } catch (err) {
        q.reject(err)
        return
      }
      try {
        await runUnit(lane.send, lane.conn, q, opening)
      } catch {
        drop(lane) // its connection broke: the pool reconnects it for whoever asks next
      } finally {
        lane.inflight--
        waiting.shift()?.()
        if (closed && lane.inflight === 0 && lanes.includes(lane)) drop(lane)
      }
    },
    close() {
      closed = true
      for (const lane of [...lanes]) if (lane.inflight === 0) drop(lane)
      for (const wake of waiting.splice(0)) wake()
    },
  }
}

/**
 * A handle's mode, changeable while leases hold it: once `readOnly` is set (the tenant started moving,
 * tenancy/move), every later unit and transaction of the handle runs read-only, so a request that leased
 * it before the move began cannot write to the copy being moved.
 */
export interface ScopedClientState {
  readOnly: boolean
}

export function createScopedClient(pool: Sql, tenantId: string, lanes?: UnitLanes, state: ScopedClientState = { readOnly: false }): Sql {
  const readWrite = beginTenantSql(tenantId)
  const readOnly = readWrite.replace(/^begin;/, 'begin read only;')
  const openingOf = () => (state.readOnly ? readOnly : readWrite)

  /** Run one already-built statement as begin + set_config / statement / commit, written as one batch. */
  async function unitHandler(q: QueryInternals): Promise<void> {
    if (lanes) return lanes.run(q, openingOf())
    let reserved: postgres.ReservedSql
    try {
      reserved = await pool.reserve()
    } catch (err) {
      q.reject(err)
      return
    }
    try {
      await runUnit(internals(reserved.unsafe('')).handler, reserved, q, openingOf())
    } finally {
      reserved.release()
    }
  }

  function scoped<Q>(query: Q): Q {
    const q = internals(query)
    refuseSettingChange(q.strings.join('?'))
    // Prepared (drizzle sends its statements unprepared): see runUnit. A statement without parameters
    // goes as a simple query, which needs no describing.
    if (!q.options.simple) q.options.prepare = true
    q.handler = unitHandler as unknown as QueryInternals['handler']
    return query
  }

  function client(first: unknown, ...rest: unknown[]): unknown {
    // Tagged template → a statement; anything else (identifiers, value lists) is a helper that runs nothing.
    if (Array.isArray(first) && Array.isArray((first as unknown as TemplateStringsArray).raw)) {
      return scoped((pool as unknown as (...a: unknown[]) => unknown)(first, ...rest))
    }
    return (pool as unknown as (...a: unknown[]) => unknown)(first, ...rest)
  }

  const refused = (name: string) => () => {
    throw new Error(`${name}() is not available on a shared tenant's database handle`)
  }

  Object.assign(client, {
    unsafe: (query: string, args?: unknown[], options?: unknown) => scoped(pool.unsafe(query, args as never, options as never)),
    begin(options: unknown, fn?: unknown) {
      const run = (typeof options === 'function' ? options : fn) as (tx: postgres.TransactionSql) => unknown
      const given = typeof options === 'string' ? options : ''
      const mode = state.readOnly ? `${given} read only`.trim() : given
      return pool.begin(mode, (tx) => {
        // Pipelined ahead of fn's first statement; a failure here aborts the transaction and is what fn's caller sees.
        tx.unsafe(setTenantSql(tenantId)).execute()
        return run(guardTransaction(tx))
      })
    },
    json: pool.json,
    array: pool.array,
    typed: pool.typed,
    types: pool.types,
    options: pool.options,
    parameters: pool.parameters,
    PostgresError: pool.PostgresError,
    CLOSE: pool.CLOSE,
    END: pool.END,
    reserve: refused('reserve'),
    listen: refused('listen'),
    notify: refused('notify'),
    subscribe: refused('subscribe'),
    file: refused('file'),
    largeObject: refused('largeObject'),
    end: refused('end'),
    close: refused('close'),
  })
  sharedClients.add(client)
  return client as unknown as Sql
}

/** Inside a shared tenant's transaction: the same refusal of statements naming the setting. */
function guardTransaction(tx: postgres.TransactionSql): postgres.TransactionSql {
  const check = (text: string) => refuseSettingChange(text)
  const guarded = new Proxy(tx, {
    apply(target, self, args: unknown[]) {
      const first = args[0]
      if (Array.isArray(first) && Array.isArray((first as unknown as TemplateStringsArray).raw)) check(first.join('?'))
      return Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args)
    },
    get(target, prop, receiver) {
      if (prop === 'unsafe') {
        return (query: string, ...rest: unknown[]) => {
          check(query)
          return (target.unsafe as (...a: unknown[]) => unknown)(query, ...rest)
        }
      }
      if (prop === 'savepoint') {
        const savepoint = Reflect.get(target, prop, receiver) as (...a: unknown[]) => Promise<unknown>
        return (...a: unknown[]) => {
          const fn = a.at(-1) as (sp: postgres.TransactionSql) => unknown
          return savepoint.apply(target, [...a.slice(0, -1), (sp: postgres.TransactionSql) => fn(guardTransaction(sp))])
        }
      }
      return Reflect.get(target, prop, receiver)
    },
  })
  sharedClients.add(guarded)
  return guarded
}
