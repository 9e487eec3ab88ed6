/**
 * /api/ownership-offers — open offers of ownership in the resolved tenant (src/features/members/ownership-offers.ts).
 * Offers are made at POST /api/members/:userId/ownership-offer. Here its recipient accepts (becoming an
 * owner) or declines, and an owner cancels. Admins only (recipients are admins), people only (sessionOnly).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { requireVerifiedUser } from '../../../core/identity/email-verified.js'
import { OwnershipOfferList, OwnershipOfferSchema } from '../invitations/schemas.js'
import { audit } from '../../../core/lib/audit.js'
import { forbidden } from '../../../core/lib/errors.js'
import { errorResponses, IdParams } from '../../../core/lib/schemas.js'
import { createOwnershipOffers, OFFER_ERRORS, offerState, toOfferView } from '../ownership-offers.js'

const tags = ['members']
const guarded = errorResponses(400, 401, 403, 404, 409, 410, 503)
const config = { access: { minRole: 'admin' as const }, sessionOnly: true }

const ownershipOfferRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, users, tenancy } = fastify
  const offersOf = (tenantId: string) => createOwnershipOffers(host.db, tenantId)

  fastify.get(
    '/',
    {
      config,
      schema: {
        tags,
        summary: 'Open ownership offers of the tenant (expired ones until canceled)',
        response: { 200: OwnershipOfferList, ...guarded },
      },
    },
    async (req) => ({ items: (await offersOf(req.tenant!.id).listOpen()).map(toOfferView) }),
  )

  fastify.post(
    '/:id/accept',
    {
      config,
      schema: {
        tags,
        summary: 'Accept an ownership offer made to you: you become an owner',
        description:
          '403 NOT_OFFER_RECIPIENT for anyone else; 403 EMAIL_NOT_VERIFIED; 410 OFFER_EXPIRED / OFFER_CANCELED; 409 OFFER_USED; ' +
          '409 OFFER_STALE when you are no longer an admin or its author no longer an owner.',
        params: IdParams,
        response: { 200: OwnershipOfferSchema, ...guarded },
      },
    },
    async (req) => {
      const tenantId = req.tenant!.id
      const offers = offersOf(tenantId)
      const offer = await offers.find(req.params.id)
      if (!offer) throw OFFER_ERRORS.notFound()
      if (offer.userId !== req.user!.id) throw forbidden('NOT_OFFER_RECIPIENT', 'This ownership offer was made to another member')
      offers.throwForState(offer)
      await requireVerifiedUser(users, req.user!.id)
      await offers.accept(offer)
      await tenancy.memberships.invalidate(req.user!.id, tenantId)
      await audit(
        host.db,
        {
          action: 'ownership.accepted',
          actorUserId: req.user!.id,
          tenantId,
          targetType: 'user',
          targetId: req.user!.id,
          metadata: { offerId: offer.id, offeredBy: offer.offeredBy },
        },
        req,
      )
      const accepted = await offers.find(offer.id)
      return toOfferView(accepted!)
    },
  )

  fastify.delete(
    '/:id',
    {
      config,
      schema: {
        tags,
        summary: 'Cancel an open ownership offer (owners), or decline one made to you',
        params: IdParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const offers = offersOf(tenantId)
      const offer = await offers.find(req.params.id)
      if (!offer) throw OFFER_ERRORS.notFound()
      const recipient = offer.userId === req.user!.id
      if (!recipient && req.membership!.role !== 'owner') {
        throw forbidden('INSUFFICIENT_ROLE', 'Only an owner cancels an ownership offer (or its recipient declines it)', {
          requiredRole: 'owner',
        })
      }
      const canceled = await offers.cancel(offer.id, req.user!.id)
      await audit(
        host.db,
        {
          action: recipient ? 'ownership.declined' : 'ownership.offer_canceled',
          actorUserId: req.user!.id,
          tenantId,
          targetType: 'user',
          targetId: canceled.userId,
          metadata: { offerId: canceled.id, state: offerState(offer) },
        },
        req,
      )
      return reply.code(204).send(null)
    },
  )
}

export default ownershipOfferRoutes
