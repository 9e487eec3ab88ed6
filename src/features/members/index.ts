/** What other features may use of members: signing up through an invitation (features/auth). */
export { acceptInvitation, assertUsable, INVITATION_ERRORS, invitedAddress } from './invitations/accept.js'
export { createInvitationsRepository } from './invitations/repository.js'
export { AcceptedInvitation } from './invitations/schemas.js'
