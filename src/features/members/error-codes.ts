/** The error codes of members, invitations and ownership offers. */
import type { ErrorCodesOf, ErrorCodeTable } from '../../core/lib/error-codes.js'

export const MEMBER_ERROR_CODES = {
  MEMBER_NOT_FOUND: { status: 404, description: 'No such member in this tenant' },
  PERMISSION_NOT_FOUND: { status: 404, description: 'The member has no grant or denial for this resource and action' },
  ALREADY_OWNER: { status: 409, description: 'The member is an owner already' },
  OWNERSHIP_NEEDS_ACCEPTANCE: { status: 403, description: 'Ownership is offered (POST /api/members/:userId/ownership-offer) and accepted, never set directly' },
  INVITATION_NOT_FOUND: { status: 404, description: 'No such invitation (the link may have been replaced by a newer one)' },
  INVITATION_PENDING: { status: 409, description: 'An invitation to this address is open: resend or revoke it' },
  INVITATION_NOT_OPEN: { status: 409, description: 'The invitation was already accepted or revoked' },
  INVITATION_USED: { status: 409, description: 'The invitation has already been accepted' },
  INVITATION_WRONG_ACCOUNT: { status: 403, description: 'The invitation was sent to another email address: sign in with that one' },
  INVITATION_EXPIRED: { status: 410, description: 'The invitation has expired: ask for a new one' },
  INVITATION_REVOKED: { status: 410, description: 'The invitation was withdrawn' },
  OFFER_NOT_FOUND: { status: 404, description: 'No such ownership offer' },
  OFFER_PENDING: { status: 409, description: 'An ownership offer to this member is open already' },
  OFFER_NEEDS_ADMIN: { status: 409, description: 'Ownership can only be offered to an admin member' },
  OFFER_STALE: { status: 409, description: 'The offer no longer holds: its recipient is no longer an admin, or its author no longer an owner' },
  OFFER_USED: { status: 409, description: 'The offer has already been accepted' },
  NOT_OFFER_RECIPIENT: { status: 403, description: 'The ownership offer was made to someone else' },
  OFFER_EXPIRED: { status: 410, description: 'The ownership offer has expired' },
  OFFER_CANCELED: { status: 410, description: 'The ownership offer was withdrawn' },
} as const satisfies ErrorCodeTable

declare module '../../core/lib/error-codes.js' {
  interface ErrorCodes extends ErrorCodesOf<typeof MEMBER_ERROR_CODES> {}
}
