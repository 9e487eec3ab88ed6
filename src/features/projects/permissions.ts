/** What a per-user grant can allow or deny on projects (routes.ts and export.ts name them in `config.access`). */
import type { PermissionRegistry, PermissionsOf } from '../../core/tenancy/rbac.js'

export const PROJECT_PERMISSIONS = { projects: ['view', 'edit', 'delete'] } as const satisfies PermissionRegistry

declare module '../../core/tenancy/rbac.js' {
  interface Permissions extends PermissionsOf<typeof PROJECT_PERMISSIONS> {}
}
