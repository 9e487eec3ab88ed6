/**
 * Prepared statements per tenant database. drizzle binds a prepared query to one database handle,
 * and each tenant has its own; this builds a repository's statements once per handle (WeakMap, so
 * an evicted pool's statements go with it) instead of once per request.
 */
import type { TenantDb } from './types.js'

export function preparedFor<T>(build: (db: TenantDb) => T): (db: TenantDb) => T {
  const cache = new WeakMap<TenantDb, T>()
  return (db) => {
    let statements = cache.get(db)
    if (!statements) {
      statements = build(db)
      cache.set(db, statements)
    }
    return statements
  }
}
