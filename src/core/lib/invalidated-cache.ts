/**
 * Per-process caches kept coherent across processes by Redis pub/sub: the one idea behind the tenant
 * catalog, memberships, API keys and session revocations (issue 12).
 *
 * - `createInvalidationBus` owns ONE subscriber connection per process and multiplexes channels over it.
 *   When that connection comes back after a drop, messages may have been missed: every listener hears
 *   `reconnected()` at once, and again when Redis has confirmed the re-subscription (ioredis reports
 *   'ready' before it re-subscribes, so something read in between could miss its invalidation).
 * - `createInvalidatedCache` is an LRU (bounded, TTL) with single-flight loads and the race guard: every
 *   drop bumps an epoch, and a load that started before a drop does not store what it read (nor can a
 *   later caller join it). A reconnect clears the cache (unless `keepOnReconnect`). What a message means
 *   is the owner's business (`onMessage`); the wire formats stay the modules' own.
 *
 * The hot path is `get` (a synchronous LRU lookup); `load` is for misses.
 */
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import { duplicateClient, duplicateRedis, type RedisErrorLogger } from './redis.js'

export interface ChannelListener {
  /** A message on the channel, from any process (this one included). */
  message(message: string): void
  /** The subscriber reconnected: messages sent meanwhile were lost. */
  reconnected(): void
}

export interface Subscription {
  /** Resolves once Redis confirmed the subscription; rejects when it refused. */
  ready: Promise<void>
  stop(): Promise<void>
}

export interface InvalidationBus {
  listen(channel: string, listener: ChannelListener): Subscription
  /** Publish through the process' ordinary client (the subscriber connection can't). */
  publish(channel: string, message: string): Promise<void>
  close(): Promise<void>
}

/**
 * The process' invalidation subscriber: `redis.duplicate()`, its errors logged one line per 10 s through
 * `report` (a pino logger, or an `onError(err, what)` callback such as throttledWarn).
 */
export function createInvalidationBus(
  redis: Redis,
  report: RedisErrorLogger | ((err: unknown, what: string) => void) | undefined,
  name = 'invalidation subscriber',
): InvalidationBus {
  // Its own offline queue (as duplicateRedis does): it subscribes before it is connected.
  const subscriber = typeof report === 'function' ? duplicateClient(redis, { enableOfflineQueue: true }) : duplicateRedis(redis, report, name)
  if (typeof report === 'function') subscriber.on('error', (err) => report(err, name))
  const channels = new Map<string, { listeners: Set<ChannelListener>; subscribed: Promise<void> }>()
  let closed = false

  const each = (fn: (l: ChannelListener) => void, listeners: Iterable<ChannelListener>) => {
    for (const l of listeners) {
      // One owner's bug must not keep the others from hearing the message.
      try {
        fn(l)
      } catch (err) {
        if (typeof report === 'function') report(err, `${name} listener`)
        else report?.warn({ err, client: name }, `${name}: a listener threw`)
      }
    }
  }
  const everyone = () => [...channels.values()].flatMap((c) => [...c.listeners])

  let connectedOnce = subscriber.status === 'ready'
  subscriber.on('ready', () => {
    if (!connectedOnce) {
      connectedOnce = true
      return
    }
    each((l) => l.reconnected(), everyone())
    // ioredis re-subscribes after 'ready'; SUBSCRIBE again (idempotent) to learn when that took effect.
    const names = [...channels.keys()]
    if (names.length)
      subscriber.subscribe(...names).then(
        () => each((l) => l.reconnected(), everyone()),
        () => {}, // the connection dropped again: its next 'ready' comes back here
      )
  })
  subscriber.on('message', (channel: string, message: string) => {
    const c = channels.get(channel)
    if (c) each((l) => l.message(message), c.listeners)
  })

  return {
    listen(channel, listener) {
      let c = channels.get(channel)
      if (!c) {
        const subscribed = subscriber.subscribe(channel).then(() => undefined)
        c = { listeners: new Set(), subscribed }
        channels.set(channel, c)
        const entry = c
        // A refused SUBSCRIBE is not retried by ioredis: let the next listener try again.
        subscribed.catch(() => {
          if (channels.get(channel) === entry) channels.delete(channel)
        })
      }
      c.listeners.add(listener)
      const entry = c
      return {
        ready: entry.subscribed,
        async stop() {
          if (!entry.listeners.delete(listener) || entry.listeners.size > 0 || channels.get(channel) !== entry) return
          channels.delete(channel)
          if (!closed) await subscriber.unsubscribe(channel).catch(() => {})
        },
      }
    },
    publish: (channel, message) => redis.publish(channel, message).then(() => undefined),
    async close() {
      if (closed) return
      closed = true
      channels.clear()
      subscriber.disconnect()
    },
  }
}

export interface InvalidatedCacheOptions<K extends {}, V extends {}> {
  bus: InvalidationBus
  /** close() closes the bus too (a module running on its own, as in tests). */
  ownsBus?: boolean
  channel: string
  max: number
  /** How long an entry lives; 0 stores nothing (loads are still single-flight). */
  ttlMs: number
  /** Reads a missing entry; undefined is returned, never stored (use a sentinel to cache absence). None: a cache of news only. */
  load?(key: K): Promise<V | undefined>
  /** The keys a loaded value is stored under (default: the key it was loaded by). */
  keysOf?(value: V): readonly K[]
  /** Applies a message from any process, this one included (drop, dropWhere, set…). */
  onMessage(message: string, cache: InvalidatedCache<K, V>): void
  /** Keep entries when the subscriber reconnects (values that only ever tighten, such as cutoffs). */
  keepOnReconnect?: boolean
  /** Called after a reconnect cleared the cache (owners with caches of their own keyed alike). */
  onReconnect?(): void
}

export interface InvalidatedCache<K extends {}, V extends {}> {
  /** Resolves once subscribed to the channel; rejects when Redis refuses. */
  readonly ready: Promise<void>
  /** The cached value, if any (synchronous: the hot path). */
  get(key: K): V | undefined
  /** Read `key` through `options.load`, one load per key at a time, stored unless an invalidation raced it. */
  load(key: K): Promise<V | undefined>
  /** Store a value that is news rather than a read (no race to guard against). */
  set(key: K, value: V): void
  drop(key: K): void
  dropWhere(test: (value: V, key: K) => boolean): void
  clear(): void
  /** Send `message` to every process (this one too); drop locally first, the answer comes back later. */
  publish(message: string): Promise<void>
  values(): Generator<V>
  readonly size: number
  readonly inflight: number
  close(): Promise<void>
}

export function createInvalidatedCache<K extends {}, V extends {}>(options: InvalidatedCacheOptions<K, V>): InvalidatedCache<K, V> {
  const { bus, channel, ttlMs } = options
  const lru = new LRUCache<K, V>({ max: options.max, ...(ttlMs > 0 ? { ttl: ttlMs } : {}) })
  const inflight = new Map<K, Promise<V | undefined>>()
  // Bumped by every invalidation: a load that started before one must not store what it read.
  let epoch = 0
  let closed = false

  const invalidated = () => {
    epoch++
    // Later callers must not join a load that may have read the old value.
    inflight.clear()
  }

  async function loadAndStore(key: K): Promise<V | undefined> {
    if (!options.load) return undefined
    const startedAt = epoch
    const value = await options.load(key)
    if (value !== undefined && ttlMs > 0 && epoch === startedAt && !closed) {
      if (options.keysOf) for (const k of options.keysOf(value)) lru.set(k, value)
      else lru.set(key, value)
    }
    return value
  }

  // Messages arrive asynchronously, never before `cache` below exists.
  const subscription = bus.listen(channel, {
    message(message) {
      if (!closed) options.onMessage(message, cache)
    },
    reconnected() {
      if (closed || options.keepOnReconnect) return
      cache.clear()
      options.onReconnect?.()
    },
  })

  const cache: InvalidatedCache<K, V> = {
    ready: subscription.ready,
    get: (key) => lru.get(key),
    load(key) {
      const running = inflight.get(key)
      if (running) return running
      const pending = loadAndStore(key).finally(() => {
        if (inflight.get(key) === pending) inflight.delete(key)
      })
      inflight.set(key, pending)
      return pending
    },
    set(key, value) {
      if (!closed) lru.set(key, value)
    },
    drop(key) {
      invalidated()
      lru.delete(key)
    },
    dropWhere(test) {
      invalidated()
      for (const [key, value] of lru.entries()) if (test(value, key)) lru.delete(key)
    },
    clear() {
      invalidated()
      lru.clear()
    },
    publish: (message) => bus.publish(channel, message),
    *values() {
      yield* lru.values()
    },
    get size() {
      return lru.size
    },
    get inflight() {
      return inflight.size
    },
    async close() {
      if (closed) return
      closed = true
      invalidated()
      lru.clear()
      await subscription.stop()
      if (options.ownsBus) await bus.close()
    },
  }

  return cache
}
