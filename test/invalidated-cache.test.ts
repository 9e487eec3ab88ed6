/**
 * The cross-process cache primitive (src/core/lib/invalidated-cache.ts) on its own, against real Redis:
 * invalidations reach other processes over one subscriber connection per process, a load raced by an
 * invalidation stores nothing, and a subscriber reconnect clears what may have missed a message.
 */
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createInvalidatedCache, createInvalidationBus, type InvalidatedCache, type InvalidationBus } from '../src/core/lib/invalidated-cache.js'
import { REDIS_URL, uniqueName } from './helpers/env.js'
import { type ScratchRedis, startScratchRedis } from './helpers/scratch-services.js'

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn()
})

/** A "process": its own Redis client and bus; counts the connections the bus opened. */
function process_(url = REDIS_URL, opts: RedisOptions = {}) {
  const redis = new Redis(url, opts)
  redis.on('error', () => {})
  let connections = 0
  const duplicate = redis.duplicate.bind(redis)
  redis.duplicate = ((...args: Parameters<Redis['duplicate']>) => {
    connections++
    return duplicate(...args)
  }) as Redis['duplicate']
  const warnings: Record<string, unknown>[] = []
  const logger = { warn: (obj: Record<string, unknown>) => void warnings.push(obj), info: () => {} }
  const bus = createInvalidationBus(redis, logger)
  cleanups.push(async () => {
    await bus.close()
    redis.disconnect()
  })
  return { redis, bus, warnings, connections: () => connections }
}

/** A deferred "database read" per call, resolved by the test. */
function reads<V>() {
  const pending: { key: string; resolve: (v: V | undefined) => void }[] = []
  return {
    pending,
    load: (key: string) => new Promise<V | undefined>((resolve) => pending.push({ key, resolve })),
  }
}

function cache<V extends {}>(
  bus: InvalidationBus,
  channel: string,
  load: (key: string) => Promise<V | undefined>,
  extra: { keepOnReconnect?: boolean; onReconnect?: () => void } = {},
): InvalidatedCache<string, V> {
  const c = createInvalidatedCache<string, V>({ bus, channel, max: 100, ttlMs: 60_000, load, onMessage: (m, self) => self.drop(m), ...extra })
  cleanups.push(() => c.close())
  return c
}

describe('across processes', () => {
  it('an invalidation published by one process drops the entry in another; one subscriber connection per process, channels multiplexed', async () => {
    const [users, keys] = [uniqueName('ic'), uniqueName('ic')]
    const db = new Map([['k', 'v1']])
    const load = async (key: string) => db.get(key)
    const a = process_()
    const b = process_()
    const aUsers = cache(a.bus, users, load)
    const bUsers = cache(b.bus, users, load)
    const bKeys = cache(b.bus, keys, load)
    await Promise.all([aUsers.ready, bUsers.ready, bKeys.ready])
    expect([a.connections(), b.connections()]).toEqual([1, 1])
    expect(await a.redis.pubsub('NUMSUB', users, keys)).toEqual([users, 2, keys, 1])

    for (const c of [aUsers, bUsers, bKeys]) expect(await c.load('k')).toBe('v1')
    db.set('k', 'v2')
    aUsers.drop('k')
    expect(await aUsers.load('k')).toBe('v2')
    await aUsers.publish('k')
    await expect.poll(() => bUsers.get('k'), { timeout: 3_000, interval: 10 }).toBeUndefined()
    expect(await bUsers.load('k')).toBe('v2')
    expect(bKeys.get('k')).toBe('v1') // another channel: untouched

    // Closing one cache leaves its neighbours subscribed; the last one on a channel unsubscribes.
    await bKeys.close()
    expect(await a.redis.pubsub('NUMSUB', keys)).toEqual([keys, 0])
    db.set('k', 'v3')
    await aUsers.publish('k')
    await expect.poll(() => bUsers.get('k'), { timeout: 3_000, interval: 10 }).toBeUndefined()
  })
})

describe('race guard', () => {
  it('collapses concurrent loads; a load that started before an invalidation answers but stores nothing, and nobody joins it', async () => {
    const { bus } = process_()
    const db = reads<string>()
    const c = cache(bus, uniqueName('ic'), db.load)
    await c.ready
    const first = c.load('k')
    const joined = c.load('k')
    expect(joined).toBe(first)
    expect(db.pending).toHaveLength(1)

    c.drop('k') // a write happened while the read was in flight
    const after = c.load('k')
    expect(after).not.toBe(first)
    expect(db.pending).toHaveLength(2)

    db.pending[0]!.resolve('old')
    expect(await first).toBe('old')
    expect(c.get('k')).toBeUndefined()
    db.pending[1]!.resolve('new')
    expect(await after).toBe('new')
    expect(c.get('k')).toBe('new')
    expect(c.inflight).toBe(0)
  })

  it('an invalidation from another process during a load keeps its result out of the cache', async () => {
    const channel = uniqueName('ic')
    const a = process_()
    const b = process_()
    const db = reads<string>()
    const c = cache(b.bus, channel, db.load)
    const other = cache(a.bus, channel, async () => 'x')
    await Promise.all([c.ready, other.ready])
    const loading = c.load('k')
    const before = c.inflight
    await other.publish('k')
    await expect.poll(() => c.inflight, { timeout: 3_000, interval: 10 }).toBe(0) // the drop forgot the in-flight load
    expect(before).toBe(1)
    db.pending[0]!.resolve('old')
    expect(await loading).toBe('old')
    expect(c.get('k')).toBeUndefined()
  })

  it('ttlMs 0 stores nothing but still collapses concurrent loads', async () => {
    const { bus } = process_()
    let loads = 0
    const c = createInvalidatedCache<string, string>({
      bus,
      channel: uniqueName('ic'),
      max: 10,
      ttlMs: 0,
      load: async () => `v${++loads}`,
      onMessage: () => {},
    })
    cleanups.push(() => c.close())
    expect(await Promise.all([c.load('k'), c.load('k')])).toEqual(['v1', 'v1'])
    expect(c.get('k')).toBeUndefined()
    expect(await c.load('k')).toBe('v2')
  })
})

describe('subscriber reconnect', () => {
  let scratch: ScratchRedis | undefined
  afterAll(async () => {
    await scratch?.destroy()
  })

  it('clears the caches (and what was loading) once the subscriber is back, keeps keepOnReconnect ones, and listens again', async () => {
    scratch = await startScratchRedis()
    const channel = uniqueName('ic')
    const p = process_(scratch.url, { retryStrategy: () => 50, maxRetriesPerRequest: 1 })
    const db = reads<string>()
    let reconnects = 0
    const cleared = cache(p.bus, channel, db.load, { onReconnect: () => reconnects++ })
    const kept = cache(p.bus, `${channel}:kept`, async () => 'kept')
    const keptAcross = createInvalidatedCache<string, string>({
      bus: p.bus,
      channel: `${channel}:cutoffs`,
      max: 10,
      ttlMs: 60_000,
      onMessage: () => {},
      keepOnReconnect: true,
    })
    cleanups.push(() => keptAcross.close())
    await Promise.all([cleared.ready, kept.ready, keptAcross.ready])

    cleared.set('k', 'cached')
    keptAcross.set('u', 'cutoff')
    expect(await kept.load('k')).toBe('kept')
    const loading = cleared.load('slow') // in flight across the outage

    await scratch.kill()
    // The outage goes through the rate-limited pino listener, under the bus' one client name.
    await expect.poll(() => p.warnings.length, { timeout: 10_000, interval: 50 }).toBeGreaterThan(0)
    expect(p.warnings[0]).toMatchObject({ client: 'invalidation subscriber' })
    expect(cleared.get('k')).toBe('cached') // still served while Redis is down
    await scratch.start()

    await expect.poll(() => reconnects, { timeout: 15_000, interval: 50 }).toBeGreaterThanOrEqual(1)
    expect(cleared.get('k')).toBeUndefined()
    expect(kept.get('k')).toBeUndefined()
    expect(keptAcross.get('u')).toBe('cutoff')
    db.pending[0]!.resolve('read before the reconnect')
    expect(await loading).toBe('read before the reconnect')
    expect(cleared.get('slow')).toBeUndefined()

    // Subscribed again: a message from another process drops an entry loaded after the reconnect.
    const publisher = new Redis(scratch.url)
    cleanups.push(() => publisher.disconnect())
    await expect.poll(() => publisher.pubsub('NUMSUB', channel), { timeout: 10_000, interval: 50 }).toEqual([channel, 1])
    cleared.set('k', 'fresh')
    await publisher.publish(channel, 'k')
    await expect.poll(() => cleared.get('k'), { timeout: 3_000, interval: 10 }).toBeUndefined()
    expect(p.connections()).toBe(1)
  }, 60_000)
})
