/**
 * Prepared statements per database handle. drizzle binds a prepared query to one database handle,
 * and each tenant has its own; this builds a repository's statements once per handle (WeakMap, so
 * an evicted pool's statements go with it) instead of once per request. Works for the host's handle too.
 */
import { Column, DrizzleQueryError, is, NoopLogger, Param, Placeholder } from 'drizzle-orm'
import { NoopCache } from 'drizzle-orm/cache/core'
import type { Sql } from '../db/connect.js'
import type { TenantDb } from './types.js'

export function preparedFor<T, D extends object = TenantDb>(build: (db: D) => T): (db: D) => T {
  const cache = new WeakMap<D, T>()
  return (db) => {
    let statements = cache.get(db)
    if (!statements) {
      statements = build(db)
      cache.set(db, statements)
    }
    return statements
  }
}

/** What drizzle's postgres.js prepared query holds: not in its public types. */
interface DrizzlePrepared {
  client: Sql
  queryString: string
  params: unknown[]
  fields: { path: string[]; field: unknown }[] | undefined
  prepare: boolean
  logger: unknown
  cache: unknown
  customResultMapper: unknown
}

/**
 * A prepared single-table select run straight on its handle's postgres.js client: the same SQL text, the
 * same parameters, the same client (so a shared tenant's scoping and a moving tenant's read-only handle
 * apply as before), the same rows and the same DrizzleQueryError on failure. What it skips is drizzle's
 * per-call layering: three tracer spans, the query-cache wrapper and the logger (none configured in this
 * kit), `fillPlaceholders`' entity checks and `mapResultRow`'s generic walk, about four promises and a
 * dozen closures per execution. On the hot read of bench:request-plane that was ~5 % of the server's CPU.
 *
 * Anything it doesn't cover (joins or nested selections, a custom mapper, a logger or cache on the handle)
 * gets drizzle's own `execute` back, so wrapping a prepared query is always safe.
 */
export function lean<P extends { execute(values?: Record<string, unknown>): Promise<unknown> }>(prepared: P): Pick<P, 'execute'> {
  const q = prepared as unknown as DrizzlePrepared
  const fields = q.fields
  const simple =
    fields?.every((f) => f.path.length === 1 && is(f.field, Column)) === true &&
    q.customResultMapper === undefined &&
    // drizzle's query cache is bypassed whenever the cache is the no-op one, whatever cacheConfig says
    (q.cache === undefined || is(q.cache, NoopCache)) &&
    is(q.logger, NoopLogger)
  if (!simple) return prepared
  const keys = fields!.map((f) => f.path[0]!)
  const decoders = fields!.map((f) => f.field as Column)
  // Each parameter: its placeholder's name (filled per call, through the column's encoder when drizzle gave one), or a constant.
  const slots = q.params.map((p) => {
    if (is(p, Placeholder)) return { name: p.name as string, encode: undefined }
    if (is(p, Param) && is(p.value, Placeholder)) return { name: p.value.name as string, encode: p.encoder }
    return { constant: p }
  })
  const fill = (values: Record<string, unknown>) =>
    slots.map((s) => {
      if ('constant' in s) return s.constant
      if (!(s.name in values)) throw new Error(`No value for placeholder "${s.name}" was provided`)
      const value = values[s.name]
      return s.encode ? s.encode.mapToDriverValue(value) : value
    })
  const toRow = (raw: unknown[]) => {
    const row: Record<string, unknown> = {}
    for (let i = 0; i < keys.length; i++) {
      const value = raw[i]
      row[keys[i]!] = value === null ? null : decoders[i]!.mapFromDriverValue(value)
    }
    return row
  }
  return {
    execute: (async (values: Record<string, unknown> = {}) => {
      const params = fill(values)
      let rows: unknown[][]
      try {
        rows = (await q.client.unsafe(q.queryString, params as never[], { prepare: q.prepare }).values()) as unknown[][]
      } catch (err) {
        throw new DrizzleQueryError(q.queryString, params, err as Error)
      }
      return rows.map(toRow)
    }) as P['execute'],
  }
}
