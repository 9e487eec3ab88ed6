/**
 * Realtime (src/features/realtime): a tenant's domain events streamed to its members over Server-Sent
 * Events and WebSocket (routes.ts), fanned out across every API instance through Redis (stream.ts, hub.ts).
 *
 * The listener runs in every process that publishes domain events (API and worker): it appends the event
 * to the tenant's replay buffer and publishes it on the tenant's channel, in one Redis call, not awaited
 * by the publisher (a Redis hiccup loses a live event, never delays or fails the change that made it).
 */
import { defineFeature } from '../../core/feature.js'
import { REALTIME_ERROR_CODES } from './error-codes.js'
import { isRealtimeEventType } from './events.js'
import realtimePlugin from './plugin.js'
import realtimeRoutes from './routes.js'
import { publishRealtime, realtimeKeys } from './stream.js'

export default defineFeature({
  name: 'realtime',
  errors: REALTIME_ERROR_CODES,
  plugins: [realtimePlugin],
  routes: [{ scope: 'tenant', prefix: '/events', plugin: realtimeRoutes }],
  listen: ({ redis, config, logger }) => {
    const keys = realtimeKeys(config.redisPrefix, config.redisCluster)
    return function streamToRealtime(event) {
      if (!isRealtimeEventType(event.type)) return
      publishRealtime(redis, keys, event, config.realtime).catch((err) =>
        logger.warn({ err, eventId: event.id, type: event.type, tenantId: event.tenantId }, 'realtime: event not published'),
      )
    }
  },
})
