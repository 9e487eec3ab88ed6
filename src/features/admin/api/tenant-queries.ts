/**
 * The admin API's reads of the tenant catalog: search and filter every tenant (whatever its status, soft
 * deleted included), newest first with an id cursor, and one tenant in detail. Never the database URL.
 * The same filter selects the tenants of a bulk suspend or resume (jobs.ts).
 */
import { and, count, desc, eq, inArray, lt, type SQL, sql } from 'drizzle-orm'
import {
  MIGRATION_STATUSES,
  type MigrationStatus,
  memberships,
  pricingPlans,
  subscriptions,
  TENANT_STATUSES,
  type Tenant,
  type TenantStatus,
  tenants,
} from '../../../../drizzle/host/schema.js'
import type { HostDb } from '../../../core/db/host.js'
import type { PoolManager } from '../../../core/tenancy/types.js'

export { MIGRATION_STATUSES, TENANT_STATUSES }

export interface TenantFilter {
  /** Part of the slug, the name or an owner's email (case-insensitive). */
  q?: string | undefined
  status?: TenantStatus | undefined
  planTier?: string | undefined
  migrationStatus?: MigrationStatus | undefined
}

/** `%`, `_` and `\` match themselves. */
const likePattern = (q: string) => `%${q.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`

// The tenant's id is spelled core_tenants.id where it is the outer row: drizzle leaves a lone table's
// columns unqualified, and inside these subqueries a bare "id" would be m.id.
const OUTER_ID = sql.raw('core_tenants.id')
const ownerEmails = (tenantId: SQL) =>
  sql`select u.email from core_memberships m join core_users u on u.id = m.user_id where m.tenant_id = ${tenantId} and m.role = 'owner'`

export function tenantFilterSql(f: TenantFilter): SQL | undefined {
  const where: SQL[] = []
  if (f.q) {
    const like = likePattern(f.q)
    where.push(
      sql`(lower(${tenants.slug}) like ${like} or lower(${tenants.name}) like ${like} or exists (
        select 1 from core_memberships m join core_users u on u.id = m.user_id
        where m.tenant_id = ${OUTER_ID} and m.role = 'owner' and lower(u.email) like ${like}))`,
    )
  }
  if (f.status) where.push(eq(tenants.status, f.status))
  if (f.planTier) where.push(eq(tenants.planTier, f.planTier))
  if (f.migrationStatus) where.push(eq(tenants.migrationStatus, f.migrationStatus))
  return where.length ? and(...where) : undefined
}

const summaryColumns = {
  id: tenants.id,
  slug: tenants.slug,
  name: tenants.name,
  planTier: tenants.planTier,
  status: tenants.status,
  migrationVersion: tenants.migrationVersion,
  migrationStatus: tenants.migrationStatus,
  createdAt: tenants.createdAt,
  updatedAt: tenants.updatedAt,
  deletedAt: tenants.deletedAt,
  ownerEmail: sql<string | null>`(${ownerEmails(OUTER_ID)} order by m.created_at limit 1)`,
}

export type TenantSummary = { [K in keyof typeof summaryColumns]: K extends 'ownerEmail' ? string | null : Tenant[K & keyof Tenant] }

export async function listTenants(db: HostDb, f: TenantFilter & { limit: number; cursor?: string | undefined }) {
  const rows = await db
    .select(summaryColumns)
    .from(tenants)
    .where(and(tenantFilterSql(f), f.cursor ? lt(tenants.id, f.cursor) : undefined))
    .orderBy(desc(tenants.id))
    .limit(f.limit + 1)
  const items = rows.slice(0, f.limit) as TenantSummary[]
  return { items, nextCursor: rows.length > f.limit ? items.at(-1)!.id : null }
}

/** Ids of the tenants a filter selects, newest first, a page at a time (bulk jobs walk it with the cursor). */
export async function tenantIdsPage(db: HostDb, where: SQL | undefined, after: string | undefined, limit: number): Promise<string[]> {
  const rows = await db
    .select({ id: tenants.id })
    .from(tenants)
    .where(and(where, after ? lt(tenants.id, after) : undefined))
    .orderBy(desc(tenants.id))
    .limit(limit)
  return rows.map((r) => r.id)
}

/** Of these ids, those that exist. */
export async function existingTenantIds(db: HostDb, ids: readonly string[]): Promise<string[]> {
  if (!ids.length) return []
  return (await db.select({ id: tenants.id }).from(tenants).where(inArray(tenants.id, [...ids]))).map((r) => r.id)
}

export interface TenantDetail {
  row: Tenant
  ownerEmail: string | null
  membersCount: number
  subscription: {
    id: string
    status: string
    planKey: string | null
    billingInterval: string | null
    currentPeriodEnd: Date | null
    cancelAtPeriodEnd: boolean
    canceledAt: Date | null
  } | null
  databaseSizeBytes: number | null
}

export async function describeTenant(
  db: HostDb,
  row: Tenant,
  deps: { pools: PoolManager; dbUrl: (row: Tenant) => string },
): Promise<TenantDetail> {
  const [[members], [owner], [subscription], databaseSizeBytes] = await Promise.all([
    db.select({ n: count() }).from(memberships).where(and(eq(memberships.tenantId, row.id), eq(memberships.status, 'active'))),
    db.execute<{ email: string }>(sql`${ownerEmails(sql`${row.id}::uuid`)} order by m.created_at limit 1`),
    db
      .select({
        id: subscriptions.id,
        status: subscriptions.status,
        planKey: pricingPlans.key,
        billingInterval: subscriptions.billingInterval,
        currentPeriodEnd: subscriptions.currentPeriodEnd,
        cancelAtPeriodEnd: subscriptions.cancelAtPeriodEnd,
        canceledAt: subscriptions.canceledAt,
      })
      .from(subscriptions)
      .leftJoin(pricingPlans, eq(pricingPlans.id, subscriptions.planId))
      .where(eq(subscriptions.tenantId, row.id))
      .orderBy(desc(subscriptions.stripeUpdatedAt))
      .limit(1),
    databaseSize(row, deps),
  ])
  return { row, ownerEmail: owner?.email ?? null, membersCount: members?.n ?? 0, subscription: subscription ?? null, databaseSizeBytes }
}

/**
 * pg_database_size, asked on the tenant's own database server (it may not be the host's). null when the
 * database can't be reached (not yet created, or the server is down) and for a shared tenant; the rest of the detail still answers.
 */
async function databaseSize(row: Tenant, deps: { pools: PoolManager; dbUrl: (row: Tenant) => string }): Promise<number | null> {
  if (row.status === 'provisioning' || row.status === 'failed') return null
  // A shared tenant has no database of its own: the shared database's size is not its size.
  if (row.isolation === 'shared') return null
  try {
    const tenant = { id: row.id, dbUrl: deps.dbUrl(row), poolerUrl: undefined, maxConnections: row.maxConnections ?? undefined, server: row.server }
    return await deps.pools.withTenant(tenant, async (tdb) => {
      const [size] = await tdb.$client<{ bytes: string }[]>`select pg_database_size(current_database())::text as bytes`
      return size ? Number(size.bytes) : null
    })
  } catch {
    return null
  }
}
