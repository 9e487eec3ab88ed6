/**
 * Public billing routes (mount with `{ prefix: '/billing' }`): GET /billing/plans, the active plans in
 * sort order for a pricing page. Served from the database, so it answers even when Stripe is not
 * configured (checkout then answers 503 BILLING_DISABLED).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { HostDatabase } from '../../db/host.js'
import { createPlansRepository } from '../../billing/plans.js'

export interface BillingRouteOptions {
  host: HostDatabase
}

const Amount = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'In the currency’s smallest unit (cents)' })

export const PlanSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
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
