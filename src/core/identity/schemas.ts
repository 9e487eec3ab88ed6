/** Request and response schemas of the identity routes. */
import { Type } from 'typebox'
import { PASSWORD_MAX } from './password.js'
import { Text, Uuid } from '../lib/schemas.js'

export const Email = Type.String({ format: 'email', maxLength: 254 })
// The schema lets over-long passwords through to the policy check so they get PASSWORD_TOO_LONG, not a generic error.
export const Password = Type.String({ minLength: 1, maxLength: PASSWORD_MAX * 8 })

export const UserSchema = Type.Object({
  id: Uuid,
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  emailVerified: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
})

export const TenantSummary = Type.Object({
  id: Uuid,
  slug: Type.String(),
  name: Type.String(),
  status: Type.String(),
})

export const MembershipSchema = Type.Object({
  tenantId: Uuid,
  slug: Type.String(),
  name: Type.String(),
  role: Type.String(),
  status: Type.String(),
  tenantStatus: Type.String(),
})

export const SignupBody = Type.Object(
  {
    email: Email,
    password: Password,
    name: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
    /** Signing up from an invitation email: the token proves the address (verified at once) and the invitation is accepted. */
    invitationToken: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
  },
  { additionalProperties: false },
)
export const LoginBody = Type.Object({ email: Email, password: Password }, { additionalProperties: false })
