/**
 * Roles inside a tenant (seed: admin 3 > editor 2 > viewer 1) and the checks behind `require_role` /
 * `has_min_role`. The effective role is read from the databases on every request, never from the
 * client: a tenant owner or admin member is always admin; any other member has the local role of
 * their tenant user. A per-user row in core_permissions (resource × action) grants or denies an
 * action regardless of the role default; owners can't be locked out by a denial.
 */
import type { MembershipRole } from '../../drizzle/host/schema.js'
import { TENANT_ROLES, type TenantRole } from '../../drizzle/tenant/schema.js'
import type { TenantDb } from './types.js'

export type Role = TenantRole
export const ROLE_LEVEL: Record<Role, number> = { viewer: 1, editor: 2, admin: 3 }
export const ROLES = TENANT_ROLES

export interface AccessRule {
  minRole: Role
  resource?: string
  action?: string
}

export const hasMinRole = (role: Role | null | undefined, min: Role) => !!role && ROLE_LEVEL[role] >= ROLE_LEVEL[min]

export function createRoleResolver() {
  return {
    async effectiveRole(db: TenantDb, _tenantId: string, userId: string, membershipRole: MembershipRole): Promise<Role> {
      if (membershipRole === 'owner' || membershipRole === 'admin') return 'admin'
      // Raw postgres.js tagged query: prepared per connection (drizzle's ad-hoc queries are not).
      const [row] = await db.$client<{ role: Role }[]>`select role from core_tenant_users where global_user_id = ${userId}`
      return row?.role ?? 'viewer'
    },

    async allows(db: TenantDb, userId: string, membershipRole: MembershipRole, role: Role, rule: AccessRule): Promise<boolean> {
      if (membershipRole === 'owner') return true
      if (rule.resource && rule.action) {
        const [grant] = await db.$client<{ granted: boolean }[]>`
          select p.granted from core_permissions p join core_tenant_users u on u.id = p.tenant_user_id
          where u.global_user_id = ${userId} and p.resource = ${rule.resource} and p.action = ${rule.action}`
        if (grant) return grant.granted
      }
      return hasMinRole(role, rule.minRole)
    },
  }
}
