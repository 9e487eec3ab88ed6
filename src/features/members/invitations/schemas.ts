/** Request and response schemas of /api/invitations, /invitations/:token and ownership offers. */
import { Type } from 'typebox'
import { Email } from '../../../core/identity/schemas.js'
import { Text, Uuid } from '../../../core/lib/schemas.js'
import { AddableRoleSchema, InvitedRoleSchema, LocalRoleSchema } from '../schemas.js'

const DateTime = Type.String({ format: 'date-time' })

export const InviteBody = Type.Object(
  {
    email: Email,
    /** Membership role once accepted: ownership is only ever offered to an admin (ownership offers). */
    role: AddableRoleSchema,
    /** Tenant-local role; default admin for an admin, viewer for a member. */
    localRole: Type.Optional(LocalRoleSchema),
  },
  { additionalProperties: false },
)

export const InvitationSchema = Type.Object({
  id: Uuid,
  email: Type.String(),
  role: InvitedRoleSchema,
  localRole: LocalRoleSchema,
  state: Type.Union([Type.Literal('pending'), Type.Literal('expired'), Type.Literal('accepted'), Type.Literal('revoked')]),
  invitedBy: Type.Union([Uuid, Type.Null()]),
  expiresAt: DateTime,
  sentAt: DateTime,
  createdAt: DateTime,
})

export const InvitationPage = Type.Object({ items: Type.Array(InvitationSchema), nextCursor: Type.Union([Uuid, Type.Null()]) })

export const PageQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }), cursor: Type.Optional(Uuid) },
  { additionalProperties: false },
)

/** Invitation tokens are `inv_` + 43 base64url characters; anything else is a 404 without a lookup. */
export const TokenParams = Type.Object({ token: Text({ minLength: 1, maxLength: 100 }) })

export const PublicInvitation = Type.Object({
  tenant: Type.Object({ name: Type.String() }),
  inviter: Type.Object({ name: Type.Union([Type.String(), Type.Null()]) }),
  email: Type.String({ description: 'the invited address: accept signed in with it (verified), or sign up with it and this token' }),
  role: InvitedRoleSchema,
  localRole: LocalRoleSchema,
  expiresAt: DateTime,
})

export const AcceptedInvitation = Type.Object({
  tenant: Type.Object({ id: Uuid, slug: Type.String(), name: Type.String() }),
  role: InvitedRoleSchema,
  localRole: LocalRoleSchema,
})

export const OwnershipOfferSchema = Type.Object({
  id: Uuid,
  userId: Uuid,
  offeredBy: Type.Union([Uuid, Type.Null()]),
  state: Type.Union([Type.Literal('open'), Type.Literal('expired'), Type.Literal('accepted'), Type.Literal('canceled')]),
  expiresAt: DateTime,
  createdAt: DateTime,
})

export const OwnershipOfferList = Type.Object({ items: Type.Array(OwnershipOfferSchema) })
