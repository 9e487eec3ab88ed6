/**
 * Load shedding (@fastify/under-pressure): past a heap or event-loop threshold new requests get 503
 * SERVICE_UNAVAILABLE in the kit's shape with Retry-After, while liveness, readiness (which then says
 * "unavailable", checks.pressure: down) and /metrics still answer. The thresholds are set low enough for
 * this process to cross them (heap: 1 % of V8's limit; event loop: a busy loop of the test's own).
 */
import { getHeapStatistics } from 'node:v8'
import type { FastifyInstance } from 'fastify'
import { describe, expect, it } from 'vitest'
import { buildApp } from '../helpers/build-app.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const ctx = useApp()

async function withApp(vars: Record<string, string>, run: (app: FastifyInstance) => Promise<void>) {
  const app = await buildApp(ctx.env.configWith({ PRESSURE_SAMPLE_INTERVAL_MS: '20', ...vars }))
  try {
    await run(app)
  } finally {
    await app.close()
  }
}

const busyFor = (ms: number) => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    // the event loop is blocked on purpose: this is the load
  }
}

describe('load shedding', () => {
  it('is off at the default thresholds for an ordinary process', async () => {
    expect(ctx.app.isUnderPressure()).toBe(false)
    expect((await ctx.app.inject('/me')).statusCode).toBe(401)
  })

  it('answers 503 SERVICE_UNAVAILABLE with Retry-After past the heap threshold; probes and metrics still answer', async () => {
    // Keep the heap above 1 % of the limit whatever this worker had allocated so far.
    const threshold = getHeapStatistics().heap_size_limit / 100
    const ballast: number[][] = []
    while (process.memoryUsage().heapUsed < threshold * 1.5) ballast.push(new Array(100_000).fill(0.5))
    await withApp({ PRESSURE_MAX_HEAP_USED_PCT: '1', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }, async (app) => {
      const shed = await waitFor(async () => {
        const res = await app.inject('/me')
        return res.statusCode === 503 && res
      })
      expect(shed.json()).toEqual({ statusCode: 503, error: 'Service Unavailable', code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('heap usage') })
      expect(shed.headers['retry-after']).toBe('5')
      expect(shed.headers['x-request-id']).toBeDefined()

      const live = await app.inject('/health')
      expect(live.statusCode).toBe(200)
      expect(live.json()).toMatchObject({ status: 'ok', version: expect.any(String) })
      const ready = await app.inject('/health/ready')
      expect(ready.statusCode).toBe(503)
      expect(ready.headers['retry-after']).toBe('5')
      expect(ready.json()).toMatchObject({ status: 'unavailable', checks: { database: 'up', redis: 'up', pools: 'up', pressure: 'down' } })
      const metrics = await app.inject('/metrics')
      expect(metrics.statusCode).toBe(200)
    })
    ballast.length = 0 // held until here
  })

  it('answers 503 while the event loop lags past its threshold', async () => {
    await withApp({ PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '20', PRESSURE_MAX_HEAP_USED_PCT: '0' }, async (app) => {
      // Block the loop, then ask at once: the next sample sees the lag. Repeated until a sample lands in between.
      const shed = await waitFor(async () => {
        busyFor(200)
        const res = await app.inject('/me')
        return res.statusCode === 503 && res
      })
      expect(shed.json()).toMatchObject({ statusCode: 503, code: 'SERVICE_UNAVAILABLE', message: expect.stringContaining('event loop delay') })
      expect(shed.headers['retry-after']).toBe('5')
      // Once the loop is idle again, the next samples clear it.
      await waitFor(async () => (await app.inject('/me')).statusCode === 401)
    })
  })
})
