/**
 * Inbound webhooks from any provider, received exactly once:
 *
 *   defineInboundWebhook({ name, secret, header, encoding, prefix, timestampHeader?, toleranceS?, eventId, job })
 *
 * mounts POST /webhooks/<name> (inboundWebhookRoutes). A delivery is
 *   1. verified on its raw bytes (HMAC-SHA256, timing-safe): a bad or missing signature → 400
 *      WEBHOOK_SIGNATURE_INVALID, nothing written;
 *   2. claimed in ONE host transaction: its (webhook, event id) row in the ledger core_inbound_webhook_events
 *      and the outbox row of its processing job commit together. A redelivery of the same event id finds
 *      the row: 200 { status: 'duplicate' } and nothing else happens. A Redis outage delays the job, never
 *      loses it (the outbox sweep submits it);
 *   3. processed by `job`, a system job made with inboundWebhookJob(): it reads the ledger row, runs the
 *      handler and marks the row processed (or failed after its last attempt). The provider is answered as
 *      soon as the row is committed, so a slow handler never makes it time out and redeliver.
 *
 * A webhook whose secret is unset is not mounted: its URL answers 404 like any unknown route, so a
 * deployment that doesn't use a provider exposes nothing for it.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { uuidv7 } from 'uuidv7'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import type { Outbox } from '../../core/jobs/outbox.js'
import { type JobContext, type SystemJobDefinition, systemJob } from '../../core/jobs/registry.js'
import { badRequest } from '../../core/lib/errors.js'
import { errorResponses, Uuid } from '../../core/lib/schemas.js'
import { type HmacScheme, verifyHmacSignature } from './signature.js'

export interface InboundWebhook extends HmacScheme {
  /** The route is POST /webhooks/<name>; also the ledger's `webhook` column. Lowercase letters, digits and -. */
  name: string
  /** The shared secret, from the configuration; undefined or '' leaves the route unmounted. */
  secret: (config: Config) => string | undefined
  /** The header carrying the signature (lowercase), e.g. 'x-hub-signature-256'. */
  header: string
  /** The header carrying the signed timestamp, for providers that sign one (lowercase). */
  timestampHeader?: string
  /** The provider's id of this delivery's event (what a redelivery repeats); undefined → 400. */
  eventId: (req: FastifyRequest, body: Buffer) => string | undefined
  /** The event's type, for the ledger and the handler (GitHub: X-GitHub-Event). */
  eventType?: (req: FastifyRequest, body: Buffer) => string | undefined
  /** The system job that processes a recorded event (made with inboundWebhookJob). */
  job: string
}

/** Identity with checks a typo would otherwise only show at the first delivery. */
export function defineInboundWebhook<const W extends InboundWebhook>(webhook: W): W {
  if (!/^[a-z0-9-]{1,40}$/.test(webhook.name)) throw new Error(`inbound webhook name "${webhook.name}": lowercase letters, digits and - only`)
  if (webhook.header !== webhook.header.toLowerCase()) throw new Error(`inbound webhook ${webhook.name}: header names are lowercase`)
  return webhook
}

/** The payload of every inbound processing job: which ledger row to process. */
export const InboundJobPayload = Type.Object({ webhook: Type.String(), ledgerId: Uuid }, { additionalProperties: false })

/** A recorded delivery, as a handler gets it. */
export interface InboundEvent {
  ledgerId: string
  webhook: string
  eventId: string
  eventType: string | null
  /** The body exactly as received (its bytes were signed). */
  payload: string
  receivedAt: Date
  /** The payload parsed as JSON, or undefined when it isn't JSON (form-encoded providers). */
  json: unknown
}

export interface InboundJobDeps {
  host: HostDatabase
}

/**
 * The system job that processes one recorded event: `handle` runs once the ledger row is read; when it
 * returns, the row is processed. A row already processed (the job ran again after a crash) is not
 * handled again. Side effects outside our databases belong in `ctx.once(...)`.
 */
export function inboundWebhookJob<D = unknown, R = unknown>(
  handle: (ctx: JobContext<D & InboundJobDeps>, event: InboundEvent) => Promise<R>,
  policy: { maxRetries?: number; backoff?: SystemJobDefinition['backoff'] } = {},
) {
  const maxRetries = policy.maxRetries ?? 5
  return systemJob({
    payload: InboundJobPayload,
    maxRetries,
    backoff: policy.backoff ?? { type: 'exponential', delayMs: 5000 },
    async process(ctx: JobContext<D & InboundJobDeps>, p) {
      const { sql } = ctx.deps.host
      const [row] = await sql<{ event_id: string; event_type: string | null; status: string; payload: string; received_at: Date }[]>`
        select event_id, event_type, status, payload, received_at from core_inbound_webhook_events where id = ${p.ledgerId}`
      if (!row) return { skipped: 'no ledger row' }
      if (row.status === 'processed') return { skipped: 'already processed' }
      let json: unknown
      try {
        json = JSON.parse(row.payload)
      } catch {
        json = undefined
      }
      const event: InboundEvent = {
        ledgerId: p.ledgerId,
        webhook: p.webhook,
        eventId: row.event_id,
        eventType: row.event_type,
        payload: row.payload,
        receivedAt: row.received_at,
        json,
      }
      try {
        const result = await handle(ctx, event)
        await sql`update core_inbound_webhook_events set status = 'processed', processed_at = now(), error = null where id = ${p.ledgerId}`
        return result ?? {}
      } catch (err) {
        // Every attempt's error is kept on the row; the last one also marks it failed (an operator retries the job).
        const last = ctx.attempt > maxRetries
        await sql`update core_inbound_webhook_events set error = ${String((err as Error)?.message ?? err)},
          status = ${last ? 'failed' : 'received'} where id = ${p.ledgerId}`
        throw err
      }
    },
  })
}

export interface InboundWebhookRouteOptions {
  config: Config
  host: HostDatabase
  outbox: Pick<Outbox, 'write' | 'dispatch'>
  webhooks: readonly InboundWebhook[]
}

const Received = Type.Object({
  received: Type.Literal(true),
  status: Type.Union([Type.Literal('accepted'), Type.Literal('duplicate')], {
    description: 'accepted: recorded, its job will process it; duplicate: this event id was received before, nothing done',
  }),
})

const header = (req: FastifyRequest, name: string): string | undefined => {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** POST /webhooks/<name> for each webhook whose secret is set (mount with `{ prefix: '/webhooks' }`). */
export const inboundWebhookRoutes: FastifyPluginAsyncTypebox<InboundWebhookRouteOptions> = async (fastify, opts) => {
  // The signature covers the exact bytes sent: keep them, whatever the content type, in this context only.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  for (const webhook of opts.webhooks) {
    const secret = webhook.secret(opts.config)
    if (!secret) {
      fastify.log.debug({ webhook: webhook.name }, 'inbound webhook not mounted: no secret configured')
      continue
    }
    fastify.post(
      `/${webhook.name}`,
      {
        // The signature is the gate (no session, no CSRF token); a provider's retry burst must not be throttled.
        config: { rateLimit: false, csrf: false },
        schema: {
          tags: ['webhooks'],
          summary: `${webhook.name} webhook (HMAC-SHA256 in ${webhook.header}; each event id processed once, by the ${webhook.job} job)`,
          body: Type.Unknown({ description: 'The provider’s payload, exactly as sent (verified against the signature)' }),
          response: { 200: Received, ...errorResponses(400, 503) },
        },
      },
      async (req) => {
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(typeof req.body === 'string' ? req.body : '')
        const check = verifyHmacSignature(webhook, {
          secret,
          body,
          header: header(req, webhook.header),
          timestamp: webhook.timestampHeader ? header(req, webhook.timestampHeader) : undefined,
        })
        if (!check.ok) {
          req.log.warn({ webhook: webhook.name, reason: check.reason }, 'inbound webhook refused')
          throw badRequest('WEBHOOK_SIGNATURE_INVALID', `The ${webhook.name} webhook signature does not verify`)
        }
        const eventId = webhook.eventId(req, body)
        if (!eventId) throw badRequest('WEBHOOK_EVENT_ID_MISSING', `The ${webhook.name} delivery names no event id`)
        const eventType = webhook.eventType?.(req, body) ?? null
        const recorded = await recordInboundEvent(opts, webhook, { eventId, eventType, payload: body.toString('utf8') })
        req.log.info({ webhook: webhook.name, eventId, eventType, status: recorded.status }, 'inbound webhook')
        return { received: true as const, status: recorded.status }
      },
    )
  }
}

/** Step 2: the ledger row and its job's outbox row in one transaction; a known event id changes nothing. */
export async function recordInboundEvent(
  deps: Pick<InboundWebhookRouteOptions, 'host' | 'outbox'>,
  webhook: Pick<InboundWebhook, 'name' | 'job'>,
  event: { eventId: string; eventType: string | null; payload: string },
): Promise<{ status: 'accepted' | 'duplicate'; ledgerId?: string }> {
  const ledgerId = uuidv7()
  const owed = await deps.host.sql.begin(async (tx) => {
    // DO NOTHING keeps a redelivery read-only: no row lock, no WAL flush at commit.
    const claimed = await tx`
      insert into core_inbound_webhook_events (id, webhook, event_id, event_type, payload)
      values (${ledgerId}, ${webhook.name}, ${event.eventId}, ${event.eventType}, ${event.payload})
      on conflict (webhook, event_id) do nothing
      returning id`
    if (claimed.length === 0) return undefined
    return deps.outbox.write(tx, [{ job: webhook.job, payload: { webhook: webhook.name, ledgerId }, key: `${webhook.name}:${event.eventId}` }])
  })
  if (!owed) return { status: 'duplicate' }
  void deps.outbox.dispatch(owed)
  return { status: 'accepted', ledgerId }
}
