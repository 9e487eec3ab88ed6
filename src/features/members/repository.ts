/**
 * A tenant's members live in two databases: the membership (who may enter, as owner/admin/member) in
 * the host DB, and the tenant user (local role, per-user permissions) in the tenant's own DB. This
 * repository reads and writes both halves for ONE tenant: it is built from the request's tenant id and
 * tenant database, so it can't reach another tenant's members.
 */
import { and, asc, eq, gt, inArray } from 'drizzle-orm'
import { type MembershipRole, memberships, users } from '../../../drizzle/host/schema.js'
import { permissions, type TenantRole, tenantUsers } from '../../../drizzle/tenant/schema.js'
import type { HostDb } from '../../core/db/host.js'
import type { TenantDb } from '../../core/tenancy/types.js'
import type { Permission } from '../../core/tenancy/rbac.js'

/** The tenant database or a transaction on it: writes take either, so the route owns the transaction. */
export type TenantTx = TenantDb | Parameters<Parameters<TenantDb['transaction']>[0]>[0]

export interface MemberRow {
  userId: string
  email: string
  name: string | null
  role: MembershipRole
  status: string
  joinedAt: Date
  membershipId: string
}

export interface MemberView {
  userId: string
  email: string
  name: string | null
  role: MembershipRole
  status: string
  localRole: TenantRole | null
  effectiveRole: TenantRole
  permissions: { resource: string; action: string; granted: boolean }[]
  joinedAt: string
}

/** Mirrors tenancy/rbac.ts effectiveRole, for display: owners and admins are admin, members their local role. */
export const effectiveRoleOf = (role: MembershipRole, localRole: TenantRole | null): TenantRole =>
  role === 'owner' || role === 'admin' ? 'admin' : (localRole ?? 'viewer')

const memberColumns = {
  userId: memberships.userId,
  email: users.email,
  name: users.name,
  role: memberships.role,
  status: memberships.status,
  joinedAt: memberships.createdAt,
  membershipId: memberships.id,
}

export function createMembersRepository(deps: { host: HostDb; tenantDb: TenantDb; tenantId: string }) {
  const { host, tenantDb, tenantId } = deps

  /** Local roles and permissions of these global users, from the tenant database. */
  async function tenantSide(globalUserIds: string[]) {
    if (globalUserIds.length === 0) return new Map<string, { localRole: TenantRole; permissions: MemberView['permissions'] }>()
    const locals = await tenantDb
      .select({ id: tenantUsers.id, globalUserId: tenantUsers.globalUserId, role: tenantUsers.role })
      .from(tenantUsers)
      .where(inArray(tenantUsers.globalUserId, globalUserIds))
    const grants = locals.length
      ? await tenantDb
          .select({
            tenantUserId: permissions.tenantUserId,
            resource: permissions.resource,
            action: permissions.action,
            granted: permissions.granted,
          })
          .from(permissions)
          .where(
            inArray(
              permissions.tenantUserId,
              locals.map((l) => l.id),
            ),
          )
          .orderBy(asc(permissions.resource), asc(permissions.action))
      : []
    const byLocalId = new Map(locals.map((l) => [l.id, { localRole: l.role, permissions: [] as MemberView['permissions'] }]))
    for (const g of grants) byLocalId.get(g.tenantUserId)?.permissions.push({ resource: g.resource, action: g.action, granted: g.granted })
    return new Map(locals.map((l) => [l.globalUserId, byLocalId.get(l.id)!]))
  }

  function toView(row: MemberRow, local: { localRole: TenantRole; permissions: MemberView['permissions'] } | undefined): MemberView {
    const localRole = local?.localRole ?? null
    return {
      userId: row.userId,
      email: row.email,
      name: row.name,
      role: row.role,
      status: row.status,
      localRole,
      effectiveRole: effectiveRoleOf(row.role, localRole),
      permissions: local?.permissions ?? [],
      joinedAt: row.joinedAt.toISOString(),
    }
  }

  async function find(userId: string): Promise<MemberRow | undefined> {
    const [row] = await host
      .select(memberColumns)
      .from(memberships)
      .innerJoin(users, eq(users.id, memberships.userId))
      .where(and(eq(memberships.tenantId, tenantId), eq(memberships.userId, userId)))
    return row
  }

  /**
   * The tenant user row of a global user, created (with `role`) when missing; an existing row keeps its role unless `overwrite`.
   * Update, else insert: no ON CONFLICT on the natural key, whose unique index leads with tenant_id in the shared layout.
   */
  async function ensureTenantUser(
    tx: TenantTx,
    user: { id: string; email: string; name: string | null },
    role: TenantRole,
    overwrite: boolean,
  ) {
    const update = () =>
      tx
        .update(tenantUsers)
        .set(overwrite ? { email: user.email, name: user.name, role, updatedAt: new Date() } : { email: user.email, name: user.name, updatedAt: new Date() })
        .where(eq(tenantUsers.globalUserId, user.id))
        .returning({ id: tenantUsers.id, role: tenantUsers.role })
    const [existing] = await update()
    if (existing) return existing
    const [inserted] = await tx
      .insert(tenantUsers)
      .values({ globalUserId: user.id, email: user.email, name: user.name, role })
      .onConflictDoNothing()
      .returning({ id: tenantUsers.id, role: tenantUsers.role })
    // Inserted concurrently by another transaction since the update: update the row that won.
    return inserted ?? (await update())[0]!
  }

  return {
    find,

    /** One member with their tenant-side half, or undefined when not a member of this tenant. */
    async view(userId: string): Promise<MemberView | undefined> {
      const row = await find(userId)
      return row && toView(row, (await tenantSide([row.userId])).get(row.userId))
    },

    /** Members in join order (membership ids are UUIDv7), `limit` at a time after `cursor`. */
    async list({
      limit,
      cursor,
    }: {
      limit: number
      cursor?: string | undefined
    }): Promise<{ items: MemberView[]; nextCursor: string | null }> {
      const rows = await host
        .select(memberColumns)
        .from(memberships)
        .innerJoin(users, eq(users.id, memberships.userId))
        .where(and(eq(memberships.tenantId, tenantId), cursor ? gt(memberships.id, cursor) : undefined))
        .orderBy(asc(memberships.id))
        .limit(limit + 1)
      const page = rows.slice(0, limit)
      const locals = await tenantSide(page.map((r) => r.userId))
      return { items: page.map((r) => toView(r, locals.get(r.userId))), nextCursor: rows.length > limit ? page.at(-1)!.membershipId : null }
    },

    ensureTenantUser,

    async removeTenantUser(tx: TenantTx, userId: string) {
      // core_permissions rows go with it (FK on delete cascade): a re-added member starts clean.
      await tx.delete(tenantUsers).where(eq(tenantUsers.globalUserId, userId))
    },

    async setPermission(tx: TenantTx, tenantUserId: string, { resource, action }: Permission, granted: boolean) {
      // Update, else insert (the same in both isolation layouts; see ensureTenantUser).
      const update = () =>
        tx
          .update(permissions)
          .set({ granted })
          .where(and(eq(permissions.tenantUserId, tenantUserId), eq(permissions.resource, resource), eq(permissions.action, action)))
          .returning({ id: permissions.id })
      if ((await update()).length) return
      const inserted = await tx.insert(permissions).values({ tenantUserId, resource, action, granted }).onConflictDoNothing().returning({ id: permissions.id })
      if (!inserted.length) await update()
    },

    /** true when a row was deleted. */
    async removePermission(userId: string, resource: string, action: string): Promise<boolean> {
      const [local] = await tenantDb.select({ id: tenantUsers.id }).from(tenantUsers).where(eq(tenantUsers.globalUserId, userId))
      if (!local) return false
      const rows = await tenantDb
        .delete(permissions)
        .where(and(eq(permissions.tenantUserId, local.id), eq(permissions.resource, resource), eq(permissions.action, action)))
        .returning({ id: permissions.id })
      return rows.length > 0
    },
  }
}

export type MembersRepository = ReturnType<typeof createMembersRepository>
