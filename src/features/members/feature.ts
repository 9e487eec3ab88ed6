/** Teams: members and their roles, invitations (and accepting them), ownership offers. */
import { defineFeature } from '../../core/feature.js'
import { MEMBER_ERROR_CODES } from './error-codes.js'
import invitationRoutes from './routes/invitations.js'
import memberRoutes from './routes/members.js'
import ownershipOfferRoutes from './routes/ownership-offers.js'
import publicInvitationRoutes from './routes/public-invitations.js'

export default defineFeature({
  name: 'members',
  errors: MEMBER_ERROR_CODES,
  routes: [
    { scope: 'tenant', prefix: '/members', plugin: memberRoutes },
    { scope: 'tenant', prefix: '/invitations', plugin: invitationRoutes },
    { scope: 'tenant', prefix: '/ownership-offers', plugin: ownershipOfferRoutes },
    { scope: 'root', prefix: '/invitations', plugin: publicInvitationRoutes },
  ],
})
