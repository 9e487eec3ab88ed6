/**
 * Which tenant a new session starts in: the one the user last chose (PUT /me/active-tenant, kept on
 * the user row) while they are still an active member of it; else a tenant they created and own;
 * else their only membership, if they have exactly one; else none (the user picks one). Never simply
 * the oldest membership: joining someone else's tenant must not move a person's work there without
 * them noticing.
 */
import { and, eq, isNull } from 'drizzle-orm'
import { tenants, type User } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import type { MembershipView } from '../../core/tenancy/memberships.js'

export async function chooseLoginTenant(
  db: HostDb,
  user: Pick<User, 'id' | 'activeTenantId'>,
  memberships: MembershipView[],
): Promise<string | undefined> {
  const usable = memberships.filter((m) => m.status === 'active')
  if (user.activeTenantId && usable.some((m) => m.tenantId === user.activeTenantId)) return user.activeTenantId
  const only = usable.length === 1 ? usable[0]!.tenantId : undefined
  const owned = new Set(usable.filter((m) => m.role === 'owner').map((m) => m.tenantId))
  if (owned.size === 0) return only
  const created = await db
    .select({ id: tenants.id })
    .from(tenants)
    .where(and(eq(tenants.createdBy, user.id), isNull(tenants.deletedAt)))
    .orderBy(tenants.createdAt)
  return created.find((t) => owned.has(t.id))?.id ?? only
}
