/**
 * Public billing routes (mount with `{ prefix: '/billing' }`):
 *   GET /billing/plans      the active plans in sort order for a pricing page. Served from the database,
 *                           so it answers even when Stripe is not configured.
 *   GET /billing/success    Checkout's success redirect (?session_id=cs_…): activates the subscription
 *                           now, from Stripe's own copy of the session, so the user doesn't wait for the
 *                           webhook. Public (the redirect may land in a fresh browser) and rate limited;
 *                           400 INVALID_CHECKOUT_SESSION · 404 CHECKOUT_SESSION_NOT_FOUND ·
 *                           409 CHECKOUT_NOT_COMPLETE · 503 BILLING_DISABLED.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { SubscriptionOrNone, subscriptionJson } from '../schemas.js'
import type { StripeService } from '../service.js'
import { billingDisabled } from '../stripe.js'
import type { HostDatabase } from '../../../core/db/host.js'
import { createPlansRepository } from '../plans.js'
import { errorResponses, Text, Uuid } from '../../../core/lib/schemas.js'

export interface BillingRouteOptions {
  host: HostDatabase
  /** Defaults to the app's `fastify.billing`; without either, /billing/success answers 503 BILLING_DISABLED. */
  billing?: Pick<StripeService, 'activateCheckout'>
}

const Amount = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'In the currency’s smallest unit (cents)' })

export const PlanSchema = Type.Object({
  id: Uuid,
  key: Type.String(),
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  currency: Type.String(),
  amountMonthly: Amount,
  amountYearly: Amount,
  intervals: Type.Array(Type.Union([Type.Literal('month'), Type.Literal('year')]), { description: 'Intervals that can be bought' }),
  trialDays: Type.Integer(),
  features: Type.Array(Type.String()),
  tierLevel: Type.Integer(),
})

const billingRoutes: FastifyPluginAsyncTypebox<BillingRouteOptions> = async (fastify, opts) => {
  const plans = createPlansRepository(opts.host.db)
  const billing = opts.billing ?? (fastify.hasDecorator('billing') ? fastify.billing : undefined)

  fastify.get(
    '/success',
    {
      // Each call costs two Stripe API requests: keep guessing and reloading cheap.
      config: { rateLimit: { max: 20, timeWindow: '1 minute' } },
      preValidation: fastify.requireUser,
      schema: {
        tags: ['billing'],
        summary: 'Checkout success redirect: activate the subscription without waiting for the webhook',
        querystring: Type.Object({ session_id: Text({ minLength: 1, maxLength: 255 }) }),
        response: {
          200: Type.Object({ tenantId: Uuid, subscription: SubscriptionOrNone }),
          ...errorResponses(400, 401, 403, 404, 409, 429, 502, 503),
        },
      },
    },
    async (req) => {
      if (!billing) throw billingDisabled()
      // Whoever holds a session id is not thereby its tenant: only a signed-in owner or admin of the
      // session's tenant may apply it and see that tenant's subscription.
      const user = req.user!
      const mayManage = async (tenantId: string) => {
        const m = await fastify.tenancy.memberships.find(user.id, tenantId)
        return m?.status === 'active' && (m.role === 'owner' || m.role === 'admin')
      }
      const { tenantId, subscription } = await billing.activateCheckout(req.query.session_id, { mayManage })
      return { tenantId, subscription: subscriptionJson(subscription) }
    },
  )

  fastify.get(
    '/plans',
    {
      schema: {
        tags: ['billing'],
        summary: 'Active pricing plans, in display order',
        response: { 200: Type.Object({ plans: Type.Array(PlanSchema) }) },
      },
    },
    async (_req, reply) => {
      const rows = await plans.listActive()
      reply.header('cache-control', 'public, max-age=60')
      return {
        plans: rows.map((p) => ({
          id: p.id,
          key: p.key,
          name: p.name,
          description: p.description,
          currency: p.currency,
          amountMonthly: p.amountMonthly,
          amountYearly: p.amountYearly,
          intervals: [...(p.stripePriceMonthly ? ['month' as const] : []), ...(p.stripePriceYearly ? ['year' as const] : [])],
          trialDays: p.trialDays,
          features: p.features,
          tierLevel: p.tierLevel,
        })),
      }
    },
  )
}

export default billingRoutes
