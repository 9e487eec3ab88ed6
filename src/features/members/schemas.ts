/** Request and response schemas of /api/members. */
import { Type } from 'typebox'
import { Email } from '../../core/identity/schemas.js'
import { Uuid } from '../../core/lib/schemas.js'
import type { Permission, PermissionRegistry } from '../../core/tenancy/rbac.js'

export const MembershipRoleSchema = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('member')])
/** Roles POST may give: ownership is only ever handed over by an owner, through PATCH. */
export const AddableRoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('member')])
/** What an invitation may carry: what tenant admins invite, or 'owner' from a platform admin (POST /admin/api/tenants). */
export const InvitedRoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('member'), Type.Literal('owner')])
export const LocalRoleSchema = Type.Union([Type.Literal('admin'), Type.Literal('editor'), Type.Literal('viewer')])

/** `projects`, `reports.export`: what core_permissions rows name (a removed feature's stay removable). */
const Name = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z][a-z0-9_.-]*$' })

export const PermissionSchema = Type.Object({ resource: Type.String(), action: Type.String(), granted: Type.Boolean() })

export const MemberSchema = Type.Object({
  userId: Uuid,
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  role: MembershipRoleSchema,
  status: Type.String(),
  /** The tenant-local role (core_tenant_users.role); null when the member has no tenant user row yet. */
  localRole: Type.Union([LocalRoleSchema, Type.Null()]),
  /** What the guard will use: owners and admins are admin, members their local role (viewer by default). */
  effectiveRole: LocalRoleSchema,
  permissions: Type.Array(PermissionSchema),
  joinedAt: Type.String({ format: 'date-time' }),
})

export const MemberPageSchema = Type.Object({ items: Type.Array(MemberSchema), nextCursor: Type.Union([Uuid, Type.Null()]) })

export const ListMembersQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Uuid),
  },
  { additionalProperties: false },
)

export const AddMemberBody = Type.Object(
  {
    email: Email,
    role: AddableRoleSchema,
    localRole: Type.Optional(LocalRoleSchema),
  },
  { additionalProperties: false },
)

export const UpdateMemberBody = Type.Object(
  {
    role: Type.Optional(MembershipRoleSchema),
    localRole: Type.Optional(LocalRoleSchema),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const UserIdParams = Type.Object({ userId: Uuid })

/**
 * A grant or denial names a resource × action some feature declares (services.permissions): one object
 * schema per resource, so an unknown pair is a 400 and the OpenAPI document lists the known ones.
 */
export function permissionBody(registry: PermissionRegistry) {
  const perResource = Object.entries(registry).map(([resource, actions]) =>
    Type.Object(
      {
        resource: Type.Literal(resource),
        action: Type.Union(actions.map((action) => Type.Literal(action))),
        granted: Type.Boolean(),
      },
      { additionalProperties: false },
    ),
  )
  return Type.Unsafe<Permission & { granted: boolean }>(Type.Union(perResource))
}

export const PermissionParams = Type.Object({ userId: Uuid, resource: Name, action: Name })

export const PermissionResult = Type.Object({ userId: Uuid, resource: Type.String(), action: Type.String(), granted: Type.Boolean() })
