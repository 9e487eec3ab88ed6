/** What other features may use of members: signing up through an invitation (features/auth), inviting a new tenant's owner (features/admin). */
export { acceptInvitation, assertUsable, INVITATION_ERRORS, invitedAddress } from './invitations/accept.js'
export { createInvitationsRepository } from './invitations/repository.js'
export { AcceptedInvitation } from './invitations/schemas.js'
export { inviteOwner } from './invitations/owner-invitation.js'
