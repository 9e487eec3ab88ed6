/**
 * Prepared statements per database handle. drizzle binds a prepared query to one database handle,
 * and each tenant has its own; this builds a repository's statements once per handle (WeakMap, so
 * an evicted pool's statements go with it) instead of once per request. Works for the host's handle too.
 */
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
