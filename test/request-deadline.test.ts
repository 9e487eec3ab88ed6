/**
 * Issue 9 §4, the handler deadline: a request is answered within REQUEST_DEADLINE_MS even when a hook or
 * its handler waits on something with no timeout of its own: 503 SERVICE_UNAVAILABLE with Retry-After in
 * the kit's shape. Never two answers: what the handler sends, returns or throws afterwards is dropped
 * without an "already sent" warning or an error line. Routes that opt out (streams) run as long as they need.
 */
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import app, { serverOptions } from '../src/app.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const DEADLINE_MS = 300
let env: TestEnv
let fastify: FastifyInstance
const logs: { level: number; msg: string; err?: { code?: string } }[] = []
/** Routes record here when their work settles, long after the deadline answered. */
const settled = new Set<string>()
let release: () => void = () => {}
const held = new Promise<void>((r) => {
  release = r
})

beforeAll(async () => {
  env = await createTestEnv({ REQUEST_DEADLINE_MS: String(DEADLINE_MS), LOG_LEVEL: 'info' })
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(l))
      done()
    },
  })
  const logger: FastifyBaseLogger = pino({ level: 'info' }, sink)
  fastify = Fastify({ ...serverOptions(env.config), loggerInstance: logger })
  await fastify.register(fp(app), { config: env.config })
  await fastify.register(async (f) => {
    const after = (name: string) => () => settled.add(name)
    // Waits on something that has no timeout (until the test releases it), then answers.
    f.get('/deadline/hang', async () => {
      await held
      settled.add('hang')
      return { late: true }
    })
    f.get('/deadline/late-send', async (_req, reply) => {
      await sleep(DEADLINE_MS * 2)
      after('late-send')()
      return reply.code(200).send({ late: true })
    })
    f.get('/deadline/late-failure', async () => {
      await sleep(DEADLINE_MS * 2)
      after('late-failure')()
      throw new Error('failed after the deadline')
    })
    f.get('/deadline/slow-hook', {
      preHandler: async () => {
        await sleep(DEADLINE_MS * 2)
        after('slow-hook')()
      },
      handler: async () => {
        settled.add('slow-hook-handler')
        return { reached: true }
      },
    })
    f.get('/deadline/fast', async () => ({ ok: true }))
    f.get('/deadline/stream', { config: { requestDeadline: false } }, async () => {
      await sleep(DEADLINE_MS * 2)
      return { streamed: true }
    })
  })
  await fastify.ready()
})

afterAll(async () => {
  release()
  await fastify?.close()
  await env?.cleanup()
})

const shape = { statusCode: 503, error: 'Service Unavailable', message: expect.any(String), code: 'SERVICE_UNAVAILABLE' }
/** Log lines that would mean a second answer was attempted, or a late failure reported as a bug. */
const trouble = () => logs.filter((l) => l.err?.code === 'FST_ERR_REP_ALREADY_SENT' || l.level >= 50)

describe('request deadline', () => {
  it('a handler waiting on something with no timeout is answered 503 with Retry-After at the deadline', async () => {
    const started = performance.now()
    const res = await fastify.inject('/deadline/hang')
    const took = performance.now() - started
    expect(res.statusCode).toBe(503)
    expect(res.json()).toEqual(shape)
    expect(res.headers['retry-after']).toBe('5')
    expect(took).toBeGreaterThanOrEqual(DEADLINE_MS - 5)
    expect(took).toBeLessThan(DEADLINE_MS + 2000)
    expect(logs.some((l) => l.msg === 'request answered 503 at its deadline')).toBe(true)
    // The handler finishes later: nothing more is sent, nothing is logged as a problem.
    release()
    await expect.poll(() => settled.has('hang')).toBe(true)
    await sleep(0)
    expect(trouble()).toEqual([])
  })

  it('a handler that sends after the deadline, or throws, never makes a second answer or an error line', async () => {
    for (const path of ['/deadline/late-send', '/deadline/late-failure']) {
      const res = await fastify.inject(path)
      expect(res.statusCode, path).toBe(503)
      expect(res.json(), path).toEqual(shape)
    }
    await expect.poll(() => settled.has('late-send') && settled.has('late-failure')).toBe(true)
    await sleep(0)
    expect(trouble()).toEqual([])
  })

  it('a hook that waits past the deadline is cut too, and the handler never runs', async () => {
    const res = await fastify.inject('/deadline/slow-hook')
    expect(res.statusCode).toBe(503)
    await expect.poll(() => settled.has('slow-hook')).toBe(true)
    await sleep(0)
    expect(settled.has('slow-hook-handler')).toBe(false)
    expect(trouble()).toEqual([])
  })

  it('answers in time are untouched; a route that opts out runs past the deadline', async () => {
    const fast = await fastify.inject('/deadline/fast')
    expect(fast.statusCode).toBe(200)
    expect(fast.json()).toEqual({ ok: true })
    const stream = await fastify.inject('/deadline/stream')
    expect(stream.statusCode).toBe(200)
    expect(stream.json()).toEqual({ streamed: true })
    // Real routes still work with the deadline on (a 401 from the auth guard, not a 503).
    expect((await fastify.inject('/api/projects')).statusCode).toBe(401)
    expect(trouble()).toEqual([])
  })

  it('REQUEST_DEADLINE_MS=0 turns it off', async () => {
    expect(env.configWith({ REQUEST_DEADLINE_MS: '0' }).requestDeadlineMs).toBe(0)
    expect(env.config.requestDeadlineMs).toBe(DEADLINE_MS)
  })
})
