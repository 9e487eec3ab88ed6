/**
 * Delivery of domain events to the tenant's endpoints, by two tenant jobs:
 *
 *   webhooks.fan_out   one per event (submitted through the outbox by the listener in feature.ts): a
 *                      delivery row per enabled endpoint subscribed to the event's type, then one
 *                      webhooks.deliver job each (ids derived from the event and the endpoint, so a re-run
 *                      adds nothing)
 *   webhooks.deliver   one POST, signed in the Standard Webhooks format (signing.ts), through the SSRF guard
 *                      (ssrf.ts). A failure is retried with BullMQ's exponential backoff: 20 s, 40 s, 80 s…
 *                      12 retries spanning about 23 h, the 24 h a receiver has to come back. Each failed
 *                      attempt counts against the endpoint; at WEBHOOKS_DISABLE_AFTER consecutive failures
 *                      the endpoint is disabled (its pending deliveries stop) and the tenant's owners are
 *                      emailed; one success resets the count.
 *
 * Delivery is at least once (a crash between the POST and its record sends it again): receivers
 * deduplicate by webhook-id, the event's id, which every attempt and every redelivery repeat.
 */
import { and, asc, eq, sql } from 'drizzle-orm'
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core'
import { Type } from 'typebox'
import { memberships, users } from '../../../drizzle/host/schema.js'
import { webhookDeliveries, webhookEndpoints } from '../../../drizzle/tenant/schema.js'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import type { EmailMessage } from '../../core/email/message.js'
import { derivedJobId, type Jobs, type TenantJobContext, tenantJob } from '../../core/jobs/registry.js'
import { decrypt } from '../../core/lib/crypto.js'
import { Uuid } from '../../core/lib/schemas.js'
import { createWebhooksRepository } from './repository.js'
import { sendWebhook } from './sender.js'
import { standardWebhookHeaders } from './signing.js'

export interface WebhookJobDeps {
  host: HostDatabase
  config: Config
}

/** Retries after the first attempt, and the first wait (doubled each time): 20 s × (2¹² − 1) ≈ 22.75 h in all. */
export const DELIVERY_RETRIES = 12
export const DELIVERY_BACKOFF_MS = 20_000

export const EventPayload = Type.Object(
  {
    id: Uuid,
    type: Type.String({ minLength: 1, maxLength: 100 }),
    occurredAt: Type.String({ format: 'date-time' }),
    data: Type.Unknown(),
  },
  { additionalProperties: false },
)

/** The body every endpoint receives (Standard Webhooks' recommended shape). */
export const webhookBody = (e: { type: string; occurredAt: string; data: unknown }) =>
  JSON.stringify({ type: e.type, timestamp: e.occurredAt, data: e.data })

/** The delivery row id (and its job id) of an event for an endpoint: the same whenever the fan-out runs. */
export const deliveryIdOf = (eventId: string, endpointId: string) => derivedJobId(eventId, endpointId)

export const webhooksFanOut = tenantJob({
  payload: { event: EventPayload },
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  async process(ctx: TenantJobContext<WebhookJobDeps>, p) {
    const repo = createWebhooksRepository(ctx.db)
    // The delivery log keeps WEBHOOK_RETENTION_DAYS: trimmed here, where it grows (a bounded batch per event).
    await repo.trimDeliveries(ctx.deps.config.webhooks.retentionDays)
    const endpoints = await repo.subscribedTo(p.event.type)
    if (endpoints.length === 0) return { deliveries: 0 }
    const payload = webhookBody(p.event)
    const ids = endpoints.map((e) => deliveryIdOf(p.event.id, e.id))
    for (const [i, e] of endpoints.entries()) {
      await repo.addDelivery({ id: ids[i]!, endpointId: e.id, eventId: p.event.id, eventType: p.event.type, payload })
    }
    await ctx.submitMany(
      'webhooks.deliver',
      ids.map((deliveryId) => ({ tenantId: p.tenantId, deliveryId })),
      { ids },
    )
    return { deliveries: ids.length }
  },
})

/** The endpoint refused by the SSRF guard: no retry can help until the endpoint's URL changes. */
class ForbiddenEndpoint extends Error {
  override name = 'ForbiddenEndpoint'
}

export const webhooksDeliver = tenantJob({
  payload: { deliveryId: Uuid },
  maxRetries: DELIVERY_RETRIES,
  backoff: { type: 'exponential', delayMs: DELIVERY_BACKOFF_MS },
  permanent: (err) => err instanceof ForbiddenEndpoint,
  async process(ctx: TenantJobContext<WebhookJobDeps>, p): Promise<Record<string, unknown>> {
    const { config } = ctx.deps
    const [row] = await ctx.db
      .select({ delivery: webhookDeliveries, endpoint: webhookEndpoints })
      .from(webhookDeliveries)
      .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
      .where(eq(webhookDeliveries.id, p.deliveryId))
    if (!row) return { skipped: 'the delivery or its endpoint was deleted' }
    const { delivery, endpoint } = row
    if (delivery.status === 'succeeded') return { skipped: 'already delivered' }
    const setDelivery = (values: PgUpdateSetSource<typeof webhookDeliveries>, db: Pick<typeof ctx.db, 'update'> = ctx.db) =>
      db
        .update(webhookDeliveries)
        .set({ ...values, updatedAt: sql`now()` })
        .where(eq(webhookDeliveries.id, delivery.id))
    if (!endpoint.enabled) {
      await setDelivery({ status: 'failed', error: 'the endpoint is disabled' })
      return { skipped: 'endpoint disabled' }
    }

    const secret = decrypt(endpoint.secretSealed, config.encryptionKeys)
    const headers = standardWebhookHeaders(secret, delivery.eventId, delivery.payload)
    const outcome = await sendWebhook(endpoint.url, delivery.payload, headers, {
      timeoutMs: config.webhooks.timeoutMs,
      allowPrivate: config.webhooks.allowPrivateTargets,
    })
    const attempt = {
      attempts: sql`${webhookDeliveries.attempts} + 1`,
      responseStatus: outcome.status,
      responseBody: outcome.body,
      error: outcome.error,
      durationMs: outcome.durationMs,
      lastAttemptAt: sql`now()`,
    }
    if (outcome.ok) {
      await ctx.db.transaction(async (tx) => {
        await setDelivery({ ...attempt, status: 'succeeded' }, tx)
        await tx.update(webhookEndpoints).set({ consecutiveFailures: 0, lastSuccessAt: sql`now()` }).where(eq(webhookEndpoints.id, endpoint.id))
      })
      return { status: outcome.status, durationMs: outcome.durationMs }
    }

    // The endpoint's count, its disabling and the delivery's row change together: no reader sees the
    // endpoint disabled while the delivery that disabled it still reads pending (CI once did).
    const last = outcome.forbidden || ctx.attempt > DELIVERY_RETRIES
    const { failures, disabling, flipped } = await ctx.db.transaction(async (tx) => {
      const [counted] = await tx
        .update(webhookEndpoints)
        .set({ consecutiveFailures: sql`${webhookEndpoints.consecutiveFailures} + 1`, lastFailureAt: sql`now()` })
        .where(eq(webhookEndpoints.id, endpoint.id))
        .returning({ failures: webhookEndpoints.consecutiveFailures })
      const failures = counted?.failures ?? 0
      const disabling = failures >= config.webhooks.disableAfterFailures
      // Only the attempt that flips enabled mails the owners.
      const [disabled] = disabling
        ? await tx
            .update(webhookEndpoints)
            .set({ enabled: false, disabledReason: `${failures} consecutive failed deliveries (last: ${outcome.error})`, updatedAt: sql`now()` })
            .where(and(eq(webhookEndpoints.id, endpoint.id), eq(webhookEndpoints.enabled, true)))
            .returning({ id: webhookEndpoints.id })
        : []
      await setDelivery({ ...attempt, status: disabling || last ? 'failed' : 'pending' }, tx)
      return { failures, disabling, flipped: disabled !== undefined }
    })
    if (disabling) {
      const mailed: number = flipped ? await mailOwnersEndpointDisabled(ctx, endpoint.url, failures, outcome.error ?? 'failed') : 0
      return { status: outcome.status, error: outcome.error, endpointDisabled: true, mailed }
    }
    if (outcome.forbidden) throw new ForbiddenEndpoint(`delivery refused: ${outcome.error}`)
    throw new Error(`webhook delivery failed: ${outcome.error}`)
  },
})

async function mailOwnersEndpointDisabled(
  ctx: TenantJobContext<WebhookJobDeps>,
  url: string,
  failures: number,
  lastError: string,
): Promise<number> {
  const { host, config } = ctx.deps
  const owners = await host.db
    .select({ userId: users.id, email: users.email })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(and(eq(memberships.tenantId, ctx.tenant.id), eq(memberships.role, 'owner'), eq(memberships.status, 'active')))
    .orderBy(asc(users.id))
  if (owners.length === 0) return 0
  const messages: EmailMessage[] = owners.map((o) => ({
    to: o.email,
    template: 'webhook_endpoint_disabled',
    variables: {
      tenant_name: ctx.tenant.name,
      endpoint_url: url,
      failures,
      last_error: lastError,
      webhooks_url: `${config.appBaseUrl}/settings/webhooks`,
    },
  }))
  await ctx.submitMany('email.send', messages, { ids: owners.map((o) => derivedJobId(ctx.jobId, `disabled:${o.userId}`)) })
  return owners.length
}

export const WEBHOOK_JOBS = { 'webhooks.fan_out': webhooksFanOut, 'webhooks.deliver': webhooksDeliver }

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof WEBHOOK_JOBS> {}
}
