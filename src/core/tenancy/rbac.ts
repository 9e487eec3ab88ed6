/**
 * Roles inside a tenant (admin 3 > editor 2 > viewer 1) and the checks behind `require_role` /
 * `has_min_role`. The effective role is read from the databases on every request, never from the
 * client: a tenant owner or admin member is always admin; any other member has the local role of
 * their tenant user (cached briefly, dropped whenever the membership is invalidated). A per-user row in core_permissions (resource × action) grants or denies an
 * action regardless of the role default; owners can't be locked out by a denial.
 */
import { LRUCache } from 'lru-cache'
import type { MembershipRole } from '../../../drizzle/host/schema.js'
import { TENANT_ROLES, type TenantRole } from '../../../drizzle/tenant/schema.js'
import type { TenantDb } from './types.js'

export type Role = TenantRole
export const ROLE_LEVEL: Record<Role, number> = { viewer: 1, editor: 2, admin: 3 }
export const ROLES = TENANT_ROLES

/**
 * Every resource × action a route's `config.access` or a per-user grant can name, so a typo is a compile
 * error. Filled by declaration merging: a feature declares its own next to its routes, in one line,
 *
 *   export const MY_PERMISSIONS = { reports: ['view', 'export'] } as const satisfies PermissionRegistry
 *   declare module '../../core/tenancy/rbac.js' { interface Permissions extends PermissionsOf<typeof MY_PERMISSIONS> {} }
 *
 * and lists it in its manifest (`permissions: MY_PERMISSIONS`), which is what makes the grant API accept it.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging (each feature's permissions)
export interface Permissions {}
/** Resources and their actions, as a feature declares them (the runtime twin of `Permissions`). */
export type PermissionRegistry = Readonly<Record<string, readonly string[]>>
/** A registry's own type, for `interface Permissions extends PermissionsOf<typeof MY_PERMISSIONS> {}`. */
export type PermissionsOf<R extends PermissionRegistry> = { [K in keyof R]: R[K][number] }
export type Resource = keyof Permissions & string
/** One known resource × action pair. */
export type Permission = { [R in Resource]: { resource: R; action: Permissions[R] } }[Resource]

/** The kit's permissions: every feature's registry merged (a resource declared twice gets both lists' actions). */
export function assemblePermissions(registries: readonly PermissionRegistry[]): PermissionRegistry {
  const all: Record<string, string[]> = {}
  for (const registry of registries)
    for (const [resource, actions] of Object.entries(registry)) all[resource] = [...new Set([...(all[resource] ?? []), ...actions])]
  return all
}

/** A route's rule: a minimum role, and optionally the known resource × action whose grant or denial overrides it. */
export type AccessRule = { minRole: Role } & (Permission | { resource?: undefined; action?: undefined })

export const hasMinRole = (role: Role | null | undefined, min: Role) => !!role && ROLE_LEVEL[role] >= ROLE_LEVEL[min]

/** A member's tenant-local role and per-user grants, read together in one query. */
interface LocalAccess {
  role: Role
  grants: Map<string, boolean>
}

export interface RoleResolverOptions {
  /** Cache entries keyed "userId:tenantId"; drop them when memberships are invalidated. */
  onInvalidate?: (listener: (key: string | undefined, tenantId: string | undefined) => void) => void
  ttlMs?: number
}

export function createRoleResolver(opts: RoleResolverOptions = {}) {
  const cache = new LRUCache<string, LocalAccess>({ max: 50_000, ttl: opts.ttlMs ?? 30_000 })
  let epoch = 0
  opts.onInvalidate?.((key, tenantId) => {
    epoch++
    if (key) cache.delete(key)
    else if (tenantId) for (const k of cache.keys()) if (k.endsWith(`:${tenantId}`)) cache.delete(k)
    else cache.clear()
  })

  async function localAccess(db: TenantDb, tenantId: string, userId: string): Promise<LocalAccess> {
    const key = `${userId}:${tenantId}`
    const hit = cache.get(key)
    if (hit) return hit
    // Raw postgres.js tagged query: prepared per connection (drizzle's ad-hoc queries are not).
    const startedAt = epoch
    const rows = await db.$client<{ role: Role; resource: string | null; action: string | null; granted: boolean | null }[]>`
      select u.role, p.resource, p.action, p.granted
      from core_tenant_users u left join core_permissions p on p.tenant_user_id = u.id
      where u.global_user_id = ${userId}`
    const access: LocalAccess = { role: rows[0]?.role ?? 'viewer', grants: new Map() }
    for (const r of rows) if (r.resource && r.action && r.granted !== null) access.grants.set(`${r.resource}:${r.action}`, r.granted)
    if (epoch === startedAt) cache.set(key, access) // not when an invalidation raced this read
    return access
  }

  // A rule's grant key, built once per rule (rules are route config: a few, long-lived objects).
  const grantKeys = new WeakMap<AccessRule, string>()
  const grantKey = (rule: AccessRule) => {
    let k = grantKeys.get(rule)
    if (k === undefined) {
      k = `${rule.resource}:${rule.action}`
      grantKeys.set(rule, k)
    }
    return k
  }
  const decide = (access: LocalAccess | undefined, role: Role, rule: AccessRule): boolean => {
    if (access && rule.resource !== undefined && rule.action !== undefined) {
      const grant = access.grants.get(grantKey(rule))
      if (grant !== undefined) return grant
    }
    return hasMinRole(role, rule.minRole)
  }
  const needsGrants = (rule: AccessRule) => rule.resource !== undefined && rule.action !== undefined

  return {
    /** effectiveRole from the cache alone: undefined when the tenant-local role is not cached (call effectiveRole). */
    peekEffectiveRole(tenantId: string, userId: string, membershipRole: MembershipRole): Role | undefined {
      if (membershipRole === 'owner' || membershipRole === 'admin') return 'admin'
      return cache.get(`${userId}:${tenantId}`)?.role
    },

    /** allows from the cache alone: undefined when it needs the tenant-local grants and they are not cached (call allows). */
    peekAllows(tenantId: string, userId: string, membershipRole: MembershipRole, role: Role, rule: AccessRule): boolean | undefined {
      if (membershipRole === 'owner') return true
      if (!needsGrants(rule)) return hasMinRole(role, rule.minRole)
      const access = cache.get(`${userId}:${tenantId}`)
      return access && decide(access, role, rule)
    },

    async effectiveRole(db: TenantDb, tenantId: string, userId: string, membershipRole: MembershipRole): Promise<Role> {
      if (membershipRole === 'owner' || membershipRole === 'admin') return 'admin'
      return (await localAccess(db, tenantId, userId)).role
    },

    async allows(db: TenantDb, tenantId: string, userId: string, membershipRole: MembershipRole, role: Role, rule: AccessRule): Promise<boolean> {
      if (membershipRole === 'owner') return true
      return decide(needsGrants(rule) ? await localAccess(db, tenantId, userId) : undefined, role, rule)
    },
  }
}
