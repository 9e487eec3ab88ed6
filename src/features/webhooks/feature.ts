/**
 * Outbound webhooks (the `webhooks` plan feature): tenants register endpoints at /api/webhooks, and the
 * domain events the kit's features publish (src/core/events/domain-events.ts) are delivered to them,
 * signed in the Standard Webhooks format, by jobs (jobs.ts).
 *
 * The listener only writes the event's webhooks.fan_out job to the outbox (host database): quick on
 * the publisher's request path, and not lost when Redis is down; and only when one of the tenant's
 * enabled endpoints wants the event's type (gate.ts), so tenants without webhooks pay nothing.
 */
import { defineFeature } from '../../core/feature.js'
import { WEBHOOK_ERROR_CODES } from './error-codes.js'
import { isWebhookEventType } from './events.js'
import { endpointGate } from './gate.js'
import { WEBHOOK_JOBS } from './jobs.js'
import webhookRoutes from './routes.js'

export default defineFeature({
  name: 'webhooks',
  errors: WEBHOOK_ERROR_CODES,
  routes: [{ scope: 'tenant', prefix: '/webhooks', plugin: webhookRoutes }],
  jobs: WEBHOOK_JOBS,
  listen: ({ host, outbox, invalidations, config, catalog, pools, logger }) => {
    const gate = endpointGate(invalidations, config.redisPrefix, { catalog, pools })!
    return async function deliverToWebhooks(event) {
      if (!isWebhookEventType(event.type)) return
      // No endpoint wants it: no outbox row, no job. Unknown (the tenant database unreachable): write it anyway.
      const wanted = gate.get(event.tenantId) ?? (await gate.load(event.tenantId).catch((err) => logger.warn({ err }, 'webhook endpoints unknown')))
      if (wanted && !wanted.includes(event.type)) return
      const payload = { tenantId: event.tenantId, event: { id: event.id, type: event.type, occurredAt: event.occurredAt, data: event.data } }
      const rows = await outbox.write(host.sql, [{ job: 'webhooks.fan_out', payload, key: event.id }])
      void outbox.dispatch(rows)
    }
  },
})
