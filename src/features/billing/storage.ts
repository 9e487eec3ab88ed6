/**
 * The plan's `storageMb` limit: how much a tenant may store, checked where its data grows (creating or
 * updating a project: the example resource; a feature of your own calls `requireStorageBelowLimit` too).
 *
 * What is measured:
 *   - a tenant with a database of its own: `pg_database_size(current_database())`, what the disk holds (a new
 *     tenant starts at the template's ~8 MB);
 *   - a shared-isolation tenant: the size of its own rows, `pg_column_size(row)` summed over every table of the
 *     shared database, read through its row-level security (so only its rows; indexes are not counted).
 * Measuring costs a catalog lookup (own database) or a scan of the tenant's rows (shared), so the figure is
 * cached per process for STORAGE_CACHE_MS while the tenant is under half its limit; nearer the limit it is
 * measured at every check, so nobody passes it by more than one write.
 */
import { sql } from 'drizzle-orm'
import type { TenantDb, TenantRecord } from '../../core/tenancy/types.js'
import { AppError } from '../../core/lib/errors.js'
import { type Entitlements, limitOf } from './entitlements.js'

const MB = 1024 * 1024
export const STORAGE_CACHE_MS = 60_000
const MAX_CACHED = 10_000

const cache = new Map<string, { bytes: number; at: number }>()

export async function measureTenantStorage(db: TenantDb, isolation: TenantRecord['isolation']): Promise<number> {
  if (isolation !== 'shared') {
    const [row] = await db.execute<{ bytes: string }>(sql`select pg_database_size(current_database())::text as bytes`)
    return Number(row!.bytes)
  }
  const tables = await db.execute<{ name: string }>(sql`select quote_ident(tablename) as name from pg_tables where schemaname = 'public' order by 1`)
  if (tables.length === 0) return 0
  const sum = tables.map((t) => `(select coalesce(sum(pg_column_size(r.*)), 0) from public.${t.name} r)`).join(' + ')
  const [row] = await db.execute<{ bytes: string }>(sql.raw(`select (${sum})::text as bytes`))
  return Number(row!.bytes)
}

/** 403 LIMIT_REACHED (limit and usedMb in MB, resource 'storageMb') once the tenant stores as much as its plan allows. */
export async function requireStorageBelowLimit(e: Entitlements, tenant: Pick<TenantRecord, 'id' | 'isolation'>, db: TenantDb): Promise<void> {
  const limit = limitOf(e, 'storageMb')
  if (limit === null) return
  const now = Date.now()
  const cached = cache.get(tenant.id)
  let bytes = cached && now - cached.at < STORAGE_CACHE_MS ? cached.bytes : undefined
  if (bytes === undefined) {
    bytes = await measureTenantStorage(db, tenant.isolation)
    cache.delete(tenant.id)
    if (bytes < (limit * MB) / 2) {
      if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!)
      cache.set(tenant.id, { bytes, at: now })
    }
  }
  if (bytes >= limit * MB) {
    const usedMb = Math.round((bytes / MB) * 10) / 10
    throw new AppError(403, 'LIMIT_REACHED', `Your plan allows ${limit} MB of storage and this tenant uses ${usedMb} MB; delete data or upgrade`, {
      limit,
      resource: 'storageMb',
      usedMb,
      plan: e.planKey,
    })
  }
}
