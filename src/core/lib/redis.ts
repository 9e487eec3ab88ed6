/**
 * Redis clients and their failure behaviour, in one place.
 *
 * Request-path clients (sessions, rate limits, caches, the producer side of the queues) fail a command
 * after REDIS_COMMAND_TIMEOUT_MS and retry it at most once, so a request answers 503 quickly while Redis
 * is down instead of hanging; reconnect attempts back off up to REDIS_MAX_RECONNECT_DELAY_MS, so service
 * resumes within about that long after Redis returns.
 *
 * Every client, subscriber and BullMQ object gets an `error` listener (logRedisErrors): without one,
 * ioredis prints raw multi-line "[ioredis] Unhandled error event" stacks outside the JSON log on every
 * reconnect attempt. The listener logs one pino line per client per interval, with how many errors it
 * folded in, and one line when the client is ready again.
 *
 * Redis Cluster (REDIS_CLUSTER): `newRedisClient` builds every client of the kit, a `Redis.Cluster` on a
 * cluster, typed as `Redis` so every consumer works unchanged (the command API is the same; commands are
 * routed by key slot, pub/sub goes through one node and classic PUBLISH reaches every node). The few
 * differences are handled here: `duplicateClient` (Cluster.duplicate takes startup nodes first), `isCluster`,
 * and `slotGroup` for keys that one script, MULTI or BullMQ queue must find in one slot.
 */
import type { EventEmitter } from 'node:events'
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import type { Config } from '../config.js'

type RedisTimeouts = Config['redisTimeouts']
/** Where Redis is: one server, or a node (configuration endpoint) of a cluster. */
export type RedisTarget = Pick<Config, 'redisUrl' | 'redisCluster'>

/** A `Redis.Cluster` behind the `Redis` type (newRedisClient). */
export const isCluster = (client: Redis): boolean => (client as unknown as { isCluster?: boolean }).isCluster === true

/**
 * A client for REDIS_URL: `new Redis(url, options)`, or on a cluster a `Redis.Cluster` started from that node,
 * with the URL's user, password and TLS (`rediss:`) for every node, the per-node options (timeouts, retries)
 * as its `redisOptions`, and `retryStrategy` as its `clusterRetryStrategy` (ioredis reconnects a cluster as
 * a whole, never node connections one by one); `clusterOptions` only on a cluster. Typed as `Redis`: see the header.
 */
export function newRedisClient(target: RedisTarget, options: RedisOptions = {}, clusterOptions: Pick<ClusterOptions, 'maxRedirections'> = {}): Redis {
  if (!target.redisCluster) return new Redis(target.redisUrl, options)
  const url = new URL(target.redisUrl)
  const db = url.pathname.replace(/^\//, '')
  if (db !== '' && db !== '0') throw new Error(`REDIS_URL names database ${db}: a Redis Cluster has only database 0`)
  const { lazyConnect, enableOfflineQueue, enableAutoPipelining, autoPipeliningIgnoredCommands, retryStrategy, ...perNode } = options
  const tls = url.protocol === 'rediss:'
  const cluster: ClusterOptions = {
    redisOptions: {
      ...perNode,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
      ...(tls ? { tls: {} } : {}),
    },
    // Managed clusters (ElastiCache, Memorystore) announce node addresses their TLS certificates name; keep them.
    ...(tls ? { dnsLookup: (address: string, done: (err: null, address: string) => void) => done(null, address) } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(enableAutoPipelining !== undefined ? { enableAutoPipelining } : {}),
    ...(autoPipeliningIgnoredCommands ? { autoPipeliningIgnoredCommands } : {}),
    ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) } : {}),
    ...clusterOptions,
  }
  return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], cluster) as unknown as Redis
}

/** `client.duplicate(overrides)` for a server or a cluster (Cluster.duplicate takes startup nodes first). */
export function duplicateClient(client: Redis, overrides: Pick<RedisOptions, 'enableOfflineQueue' | 'lazyConnect'> = {}): Redis {
  if (isCluster(client)) return (client as unknown as Cluster).duplicate([], overrides) as unknown as Redis
  return client.duplicate(overrides)
}

/**
 * The prefix of keys that must share a slot (the keys of one BullMQ queue, of one script or MULTI): on a
 * cluster `{<prefix>:<group>}`, a hash tag, so each group sits on one node and groups spread over nodes;
 * `<prefix>:<group>` on one server (the key names a single Redis always had) or when REDIS_PREFIX already
 * has a hash tag (then every key of the deployment is in that one slot anyway).
 */
export function slotGroup(prefix: string, group: string, cluster: boolean): string {
  return cluster && !/\{[^}]+\}/.test(prefix) ? `{${prefix}:${group}}` : `${prefix}:${group}`
}
/** What the error listeners need of a pino logger ('info' for the reconnect line, when given). */
export type RedisErrorLogger = Pick<Logger, 'warn'> & Partial<Pick<Logger, 'info'>>

/** Reconnect backoff: 100 ms, 200 ms, … capped (ioredis' default grows to 2 s and never gives up either). */
export const reconnectBackoff =
  (capMs: number) =>
  (attempt: number): number =>
    Math.min(attempt * 100, capMs)

export function requestPathRedisOptions(t: RedisTimeouts): RedisOptions {
  return {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: t.commandMs,
    retryStrategy: reconnectBackoff(t.maxReconnectDelayMs),
    // Auto-pipelining batches the commands of concurrent requests (session, rate limit) into one write.
    enableAutoPipelining: true,
  }
}

/**
 * A Lua script as a command of `client` (ioredis `defineCommand`), kept out of auto-pipelining. An
 * auto-pipeline copies the client's scripts when it is created: a script defined lazily while one is
 * already open in the same tick isn't on it, the call fails, and its orphaned callback later crashes the
 * process with "results[i] is not iterable" (seen in CI when a domain event's first realtime publish met a
 * session read). A script is one round trip either way; the commands around it still batch.
 */
export function defineScript(client: Redis, name: string, definition: { lua: string; numberOfKeys?: number }): void {
  if (name in client) return
  client.defineCommand(name, definition)
  // (A Cluster keeps the same option under the same name.)
  const ignored = client.options.autoPipeliningIgnoredCommands ?? []
  if (!ignored.includes(name)) client.options.autoPipeliningIgnoredCommands = [...ignored, name]
}

/** A request-path client, its errors logged through pino, failing fast while its connection is down. */
export function createRedis(target: RedisTarget, t: RedisTimeouts, logger: RedisErrorLogger, name: string, extra: RedisOptions = {}): Redis {
  const client = newRedisClient(target, { ...requestPathRedisOptions(t), ...extra })
  logRedisErrors(client, logger, name)
  failFastWhileDisconnected(client)
  return client
}

/**
 * Once a client has lost its connection, a new command fails at once ("Stream isn't writeable": a 503)
 * until it is ready again, instead of waiting in the offline queue for REDIS_COMMAND_TIMEOUT_MS: every
 * request answered during a Redis outage took the full timeout, and a request with two Redis steps twice
 * that. Commands already sent when the connection dropped still end by the timeout. The offline queue
 * stays on until the first connection (boot, and subscribers duplicated from this client then).
 * ioredis reads `options.enableOfflineQueue` at each command, so flipping it is enough.
 */
export function failFastWhileDisconnected(client: Redis): void {
  client.on('close', () => {
    client.options.enableOfflineQueue = false
  })
  client.on('ready', () => {
    client.options.enableOfflineQueue = true
  })
}

/** `redis.duplicate()` (a subscriber) with its errors logged: duplicate() does not copy listeners. */
export function duplicateRedis(redis: Redis, logger: RedisErrorLogger | undefined, name: string): Redis {
  // Its own offline queue: it subscribes before it is connected (whatever state the original is in).
  const client = duplicateClient(redis, { enableOfflineQueue: true })
  if (logger) logRedisErrors(client, logger, name)
  else client.on('error', () => {}) // never the raw "[ioredis] Unhandled error event"
  return client
}

/**
 * Log a client's `error` events through pino: the first at once, then at most one line per `everyMs`
 * carrying the count of errors since the last line; a line when it is ready again after errors.
 * Works for ioredis clients and BullMQ Queue / Worker / QueueEvents (all emit 'error').
 */
export function logRedisErrors(emitter: EventEmitter, logger: RedisErrorLogger, name: string, everyMs = 10_000): void {
  let lastLogged = 0
  let suppressed = 0
  let failing = false
  emitter.on('error', (err: Error & { code?: string }) => {
    failing = true
    const now = Date.now()
    if (now - lastLogged < everyMs) {
      suppressed++
      return
    }
    logger.warn({ client: name, code: err?.code, error: err?.message, suppressed }, `redis client "${name}" failing: ${err?.message}`)
    lastLogged = now
    suppressed = 0
  })
  emitter.on('ready', () => {
    if (!failing) return
    failing = false
    logger.info?.({ client: name, suppressed }, `redis client "${name}" connected again`)
    suppressed = 0
    lastLogged = 0
  })
}

/**
 * The same one-line-per-interval policy for callers that report errors through a callback
 * (`onError(err, what)`): one line per `what` per `everyMs`, with the count folded in.
 */
export function throttledWarn(logger: Pick<Logger, 'warn'>, everyMs = 10_000): (err: unknown, what: string) => void {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (err, what) => {
    const now = Date.now()
    const seen = last.get(what)
    if (seen && now - seen.at < everyMs) {
      seen.suppressed++
      return
    }
    const e = err as { code?: string; message?: string }
    logger.warn({ what, code: e?.code, error: e?.message, suppressed: seen?.suppressed ?? 0 }, `${what} failed: ${e?.message}`)
    last.set(what, { at: now, suppressed: 0 })
  }
}
