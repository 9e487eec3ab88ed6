/** A grant of `api_keys:manage` lets a member below admin manage the tenant's keys (up to their own role). */
import type { PermissionRegistry, PermissionsOf } from '../../core/tenancy/rbac.js'

export const API_KEY_PERMISSIONS = { api_keys: ['manage'] } as const satisfies PermissionRegistry

declare module '../../core/tenancy/rbac.js' {
  interface Permissions extends PermissionsOf<typeof API_KEY_PERMISSIONS> {}
}
