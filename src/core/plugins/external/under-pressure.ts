/**
 * Load shedding (@fastify/under-pressure): while the event loop lags more than PRESSURE_MAX_EVENT_LOOP_DELAY_MS
 * (mean over the last second) or the heap holds more than PRESSURE_MAX_HEAP_USED_PCT of V8's heap limit, new
 * requests are answered at once with 503 SERVICE_UNAVAILABLE and Retry-After (the error handler's shape), so
 * an overloaded process sheds work it would only answer late instead of queueing it. 0 turns a check off.
 *
 * Exempt (`config: { underPressure: false }`): the health probes and /metrics. Liveness must not fail on a
 * spike (a restart would lose the work in flight), readiness says "unavailable" itself (routes/health.ts,
 * so the balancer stops sending work), and the scraper must still see the process while it is struggling.
 */
import { getHeapStatistics } from 'node:v8'
import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { AppOptions, Config } from '../../config.js'
import { unavailable } from '../../lib/errors.js'
import { routeConfig } from '../../lib/route-config.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: never shed this route under pressure (probes, metrics). */
    underPressure?: boolean
  }
}

const WHY: Record<string, string> = { eventLoopDelay: 'event loop delay', heapUsedBytes: 'heap usage' }

/** The heap threshold in bytes: a share of V8's limit (--max-old-space-size, or what V8 chose for the machine). */
export function maxHeapUsedBytes(pressure: Config['pressure']): number {
  return pressure.maxHeapUsedPct > 0 ? Math.floor((getHeapStatistics().heap_size_limit * pressure.maxHeapUsedPct) / 100) : 0
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    await fastify.register(underPressure, {
      maxEventLoopDelay: config.pressure.maxEventLoopDelayMs,
      maxHeapUsedBytes: maxHeapUsedBytes(config.pressure),
      sampleInterval: config.pressure.sampleIntervalMs,
      // A rejection goes to the error handler: 503 in the kit's shape, Retry-After, one warning line.
      async pressureHandler(req, _reply, type) {
        if (routeConfig(req).underPressure === false) return
        throw unavailable('SERVICE_UNAVAILABLE', `The server is overloaded (${WHY[type] ?? type}), try again shortly`)
      },
    })
  },
  { name: 'under-pressure' },
)
