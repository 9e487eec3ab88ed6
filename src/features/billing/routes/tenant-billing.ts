/**
 * /api/billing — the resolved tenant's subscription, for its owners and admins (membership role, not
 * just an effective admin: paying is the owners' business). Each route maps to one StripeService call.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { SubscriptionOrNone as Subscription, subscriptionJson } from '../schemas.js'
import { forbidden } from '../../../core/lib/errors.js'
import { errorResponses, Text } from '../../../core/lib/schemas.js'
import { isUuid } from '../../../core/lib/uuid.js'

const Interval = Type.Union([Type.Literal('month'), Type.Literal('year')])
const PlanRef = Text({ minLength: 1, maxLength: 64, description: 'plan key (e.g. "pro") or plan id' })
const RedirectUrls = {
  successUrl: Type.Optional(Text({ maxLength: 2000, description: 'must be on STRIPE_BASE_URL' })),
  cancelUrl: Type.Optional(Text({ maxLength: 2000 })),
}
const CheckoutUrl = Type.Object({ id: Type.String(), url: Type.String() })
const SubscriptionOrNone = Type.Object({ subscription: Subscription })
const view = subscriptionJson

const planChoice = (ref: string) => (isUuid(ref) ? { planId: ref } : { planKey: ref })
const errors = errorResponses(400, 401, 402, 403, 404, 409, 502, 503)
const tags = ['billing']

async function ownersAndAdmins(req: FastifyRequest) {
  const role = req.membership?.role
  if (role !== 'owner' && role !== 'admin') throw forbidden('INSUFFICIENT_ROLE', 'Billing is managed by the tenant’s owners and admins')
}

const billingRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { billing } = fastify
  const caller = (req: FastifyRequest) => ({ id: req.user!.id, email: req.user!.email, name: req.user!.name })
  fastify.addHook('preValidation', ownersAndAdmins)

  fastify.post(
    '/checkout',
    {
      schema: {
        tags,
        summary: 'Stripe Checkout for a subscription to a plan (trial from the plan, promotion codes allowed)',
        body: Type.Object({ planId: PlanRef, interval: Interval, ...RedirectUrls }, { additionalProperties: false }),
        response: { 200: CheckoutUrl, ...errors },
      },
    },
    async (req) => {
      const { planId, interval, successUrl, cancelUrl } = req.body
      return billing.createSubscriptionCheckout({
        tenantId: req.tenant!.id,
        user: caller(req),
        interval,
        successUrl,
        cancelUrl,
        ...planChoice(planId),
      })
    },
  )

  fastify.post(
    '/checkout/one-time',
    {
      schema: {
        tags,
        summary: 'Stripe Checkout for a one-time purchase of a price for sale (STRIPE_ONE_TIME_PRICES or a plan’s; else 400 PRICE_NOT_FOR_SALE)',
        body: Type.Object(
          {
            priceId: Type.String({ pattern: '^price_[A-Za-z0-9]+$', maxLength: 255 }),
            quantity: Type.Integer({ minimum: 1, maximum: 1000 }),
            ...RedirectUrls,
          },
          { additionalProperties: false },
        ),
        response: { 200: CheckoutUrl, ...errors },
      },
    },
    async (req) => billing.createOneTimeCheckout({ tenantId: req.tenant!.id, user: caller(req), ...req.body }),
  )

  fastify.post(
    '/portal',
    {
      // A tenant suspended for non-payment must still be able to pay.
      config: { allowSuspended: true },
      // The body is optional: no body validates as {} (Fastify would validate `undefined` against the object schema).
      preValidation: async (req) => {
        req.body ??= {}
      },
      schema: {
        tags,
        summary: 'Stripe Customer Portal session',
        body: Type.Optional(Type.Object({ returnUrl: Type.Optional(Text({ maxLength: 2000 })) }, { additionalProperties: false })),
        response: { 200: Type.Object({ url: Type.String() }), ...errors },
      },
    },
    async (req) => billing.createPortalSession({ tenantId: req.tenant!.id, returnUrl: req.body?.returnUrl }),
  )

  fastify.get(
    '/subscription',
    {
      config: { allowSuspended: true },
      schema: { tags, summary: 'The tenant’s current subscription', response: { 200: SubscriptionOrNone, ...errors } },
    },
    async (req) => ({
      subscription: view(await billing.getSubscription(req.tenant!.id)),
    }),
  )

  fastify.post(
    '/cancel',
    { schema: { tags, summary: 'Cancel at the end of the current period', response: { 200: SubscriptionOrNone, ...errors } } },
    async (req) => ({ subscription: view(await billing.cancelSubscription({ tenantId: req.tenant!.id, actorUserId: req.user!.id })) }),
  )

  fastify.post(
    '/change-plan',
    {
      schema: {
        tags,
        summary: 'Move the subscription to another plan or interval (prorated)',
        body: Type.Object({ planId: PlanRef, interval: Interval }, { additionalProperties: false }),
        response: { 200: SubscriptionOrNone, ...errors },
      },
    },
    async (req) => ({
      subscription: view(
        await billing.changePlan({
          tenantId: req.tenant!.id,
          actorUserId: req.user!.id,
          interval: req.body.interval,
          ...planChoice(req.body.planId),
        }),
      ),
    }),
  )
}

export default billingRoutes
