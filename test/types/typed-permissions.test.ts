/**
 * Route access rules and grants name only the resource × action pairs the features declare
 * (`Permissions` in src/core/tenancy/rbac.ts, filled by each feature's permissions.ts): `npm test` runs
 * `tsc --noEmit` first, so each `@ts-expect-error` below fails the run if the line ever compiles. At run
 * time services.permissions holds the same pairs (what the grant route's body schema accepts).
 */
import { describe, expect, it } from 'vitest'
import type { AccessRule, Permission } from '../../src/core/tenancy/rbac.js'
import { assemblePermissions } from '../../src/core/tenancy/rbac.js'
import { FEATURES } from '../../src/features/index.js'

describe('permissions', () => {
  it('an access rule or a grant with an unknown resource or action does not compile', () => {
    const rules: AccessRule[] = [
      { minRole: 'admin' },
      { minRole: 'viewer', resource: 'projects', action: 'view' },
      { minRole: 'admin', resource: 'api_keys', action: 'manage' },
      // @ts-expect-error: a typo of a resource
      { minRole: 'viewer', resource: 'project', action: 'view' },
      // @ts-expect-error: an action of another resource
      { minRole: 'admin', resource: 'api_keys', action: 'delete' },
      // @ts-expect-error: a resource without its action
      { minRole: 'editor', resource: 'projects' },
    ]
    // @ts-expect-error: not a known pair
    const grant: Permission = { resource: 'reports', action: 'export' }
    expect(rules.length + Object.keys(grant).length).toBeGreaterThan(0)
  })

  it('the features declare at run time what they declare to the compiler', () => {
    const registry = assemblePermissions(FEATURES.map((f) => ('permissions' in f ? f.permissions : {})))
    expect(registry).toEqual({ projects: ['view', 'edit', 'delete'], api_keys: ['manage'] })
  })
})
