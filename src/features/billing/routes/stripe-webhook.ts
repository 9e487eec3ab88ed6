/**
 * POST /webhooks/stripe (mount with `{ prefix: '/webhooks' }`). An encapsulated plugin: the raw-body
 * JSON parser it installs applies to this route only, and it needs neither sessions nor tenancy.
 *   200 { received: true, status }  processed | skipped | failed (retry can't help) | duplicate
 *   400 INVALID_SIGNATURE           missing or bad Stripe-Signature: nothing written
 *   503 BILLING_DISABLED            no STRIPE_SECRET_KEY
 *   5xx otherwise                   transient failure: nothing committed, Stripe retries
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Counter } from 'prom-client'
import type Stripe from 'stripe'
import { Type } from 'typebox'
import type { Config } from '../../../core/config.js'
import type { HostDatabase } from '../../../core/db/host.js'
import { errorResponses } from '../../../core/lib/schemas.js'
import { createStripe } from '../stripe.js'
import { type BillingEvent, processStripeEvent, type WebhookDeps } from '../webhooks.js'

export interface StripeWebhookRouteOptions {
  config: Config
  host: HostDatabase
  /** A ready client (tests pass one with retries off); otherwise built from config.stripe. */
  stripe?: Stripe
  /** After-commit hook for processed events (the app invalidates cached catalog entries). */
  onBillingEvent?: (e: BillingEvent) => Promise<void>
  /** The follow-up jobs of processed events, written to the outbox with the change (the app wires billing's effects). */
  followUps?: WebhookDeps['followUps']
  /** The handler table, when not the kit's own (STRIPE_EVENT_HANDLERS). */
  handlers?: WebhookDeps['handlers']
}

const Received = Type.Object({
  received: Type.Literal(true),
  status: Type.Union([Type.Literal('processed'), Type.Literal('skipped'), Type.Literal('failed'), Type.Literal('duplicate')]),
})

const stripeWebhookRoutes: FastifyPluginAsyncTypebox<StripeWebhookRouteOptions> = async (fastify, opts) => {
  const stripe = opts.stripe ?? (opts.config.stripe ? createStripe(opts.config.stripe) : undefined)
  const deps: WebhookDeps = {
    host: opts.host,
    stripe,
    webhookSecret: opts.config.stripe?.webhookSecret,
    oneTimePriceIds: opts.config.stripe?.oneTimePriceIds,
    onBillingEvent: opts.onBillingEvent,
    followUps: opts.followUps,
    handlers: opts.handlers,
    log: fastify.log,
  }

  // Every verified delivery by event type and what the ledger made of it (an app without the metrics plugin, e.g. a bench, counts nothing).
  const outcomes = fastify.hasDecorator('metrics')
    ? new Counter({
        name: 'stripe_webhook_events_total',
        help: 'Stripe webhook deliveries by event type and ledger outcome (processed | skipped | failed | duplicate)',
        labelNames: ['event_type', 'outcome'],
        registers: [fastify.metrics.registry],
      })
    : undefined

  // The signature covers the exact bytes Stripe sent: keep them, for this encapsulated context only.
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  fastify.post(
    '/stripe',
    {
      // Stripe's bursts (retries after an outage) must not be throttled; the signature is the gate, and a bad one costs no DB work.
      // No CSRF either: Stripe sends no session cookie, and the signature authenticates the request.
      config: { rateLimit: false, csrf: false },
      schema: {
        tags: ['webhooks'],
        summary: 'Stripe webhook endpoint (signed events, applied exactly once)',
        headers: Type.Object({ 'stripe-signature': Type.Optional(Type.String()) }),
        // Documents the body; validates nothing (the route receives the raw bytes, verified against the signature).
        body: Type.Unknown({ description: 'A Stripe Event object, exactly as Stripe sent it' }),
        response: { 200: Received, ...errorResponses(400, 503) },
      },
    },
    async (req) => {
      const result = await processStripeEvent(deps, req.body as Buffer | string, req.headers['stripe-signature'])
      req.log.info({ eventId: result.eventId, type: result.type, status: result.status, reason: result.reason }, 'stripe webhook')
      outcomes?.inc({ event_type: result.type || 'unknown', outcome: result.status })
      return { received: true as const, status: result.status }
    },
  )
}

export default stripeWebhookRoutes
