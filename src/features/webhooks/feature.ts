/**
 * Outbound webhooks (the `webhooks` plan feature): tenants register endpoints at /api/webhooks, and the
 * domain events the kit's features publish (src/core/events/domain-events.ts) are delivered to them,
 * signed in the Standard Webhooks format, by jobs (jobs.ts).
 *
 * The listener only writes the event's webhooks.fan_out job to the outbox (host database): quick on
 * the publisher's request path, and not lost when Redis is down.
 */
import { defineFeature } from '../../core/feature.js'
import { WEBHOOK_ERROR_CODES } from './error-codes.js'
import { isWebhookEventType } from './events.js'
import { WEBHOOK_JOBS } from './jobs.js'
import webhookRoutes from './routes.js'

export default defineFeature({
  name: 'webhooks',
  errors: WEBHOOK_ERROR_CODES,
  routes: [{ scope: 'tenant', prefix: '/webhooks', plugin: webhookRoutes }],
  jobs: WEBHOOK_JOBS,
  listen: ({ host, outbox }) =>
    async function deliverToWebhooks(event) {
      if (!isWebhookEventType(event.type)) return
      const payload = { tenantId: event.tenantId, event: { id: event.id, type: event.type, occurredAt: event.occurredAt, data: event.data } }
      const rows = await outbox.write(host.sql, [{ job: 'webhooks.fan_out', payload, key: event.id }])
      void outbox.dispatch(rows)
    },
})
