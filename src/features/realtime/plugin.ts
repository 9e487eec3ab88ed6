/**
 * The realtime hub as a decorator (`fastify.realtime`), @fastify/websocket (its routes: routes.ts), the
 * hub's gauges and counters on /metrics, and a clean shutdown: before the server stops listening, every
 * SSE client gets a `retry:` and the end of its stream, every WebSocket close code 1012 (service restart).
 */
import websocket from '@fastify/websocket'
import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'
import type { Logger } from 'pino'
import { eq } from 'drizzle-orm'
import { apiKeys } from '../../../drizzle/host/schema.js'
import type { AppOptions } from '../../core/config.js'
import { createRealtimeHub, type RealtimeHub } from './hub.js'

declare module 'fastify' {
  interface FastifyInstance {
    realtime: RealtimeHub
  }
}

/** What a client may send on the WebSocket: nothing it needs, so small frames only (pings are control frames). */
const MAX_CLIENT_MESSAGE = 4096

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const registry = fastify.metrics.registry
    const closed = new Counter({
      name: 'realtime_clients_closed_total',
      help: 'Realtime clients closed by the server, by reason and kind',
      labelNames: ['reason', 'kind'],
      registers: [registry],
    })
    const delivered = new Counter({
      name: 'realtime_events_delivered_total',
      help: 'Event frames written to realtime clients',
      registers: [registry],
    })
    const hub = createRealtimeHub({
      redis: fastify.redis,
      coreBus: fastify.services.invalidations,
      catalog: fastify.services.catalog,
      memberships: fastify.tenancy.memberships,
      apiKeyStatus: (keyId) =>
        fastify.host.db.select({ revokedAt: apiKeys.revokedAt, expiresAt: apiKeys.expiresAt }).from(apiKeys).where(eq(apiKeys.id, keyId)),
      config,
      logger: fastify.log as Logger,
      onClose: (reason, kind) => closed.inc({ reason, kind }),
      onDeliver: (n) => delivered.inc(n),
    })
    new Gauge({
      name: 'realtime_connections',
      help: 'Open realtime connections in this process, by kind',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        const s = hub.stats()
        this.set({ kind: 'sse' }, s.sse)
        this.set({ kind: 'ws' }, s.ws)
      },
    })
    fastify.decorate('realtime', hub)

    await fastify.register(websocket, {
      options: { maxPayload: MAX_CLIENT_MESSAGE },
      // Ours instead of the plugin's (which closes sockets with no code): clients are told to reconnect.
      preClose(done) {
        hub.shutdown()
        this.websocketServer.close()
        done()
      },
    })
    // SSE clients too, when the server closes without the websocket plugin's preClose having run first.
    fastify.addHook('preClose', (done) => {
      hub.shutdown()
      done()
    })
    fastify.addHook('onClose', () => hub.close())
  },
  { name: 'realtime', dependencies: ['redis', 'host-db', 'services', 'tenancy', 'metrics'] },
)
