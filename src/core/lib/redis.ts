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
 */
import type { EventEmitter } from 'node:events'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import type { Config } from '../config.js'

type RedisTimeouts = Config['redisTimeouts']
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
  const ignored = client.options.autoPipeliningIgnoredCommands ?? []
  if (!ignored.includes(name)) client.options.autoPipeliningIgnoredCommands = [...ignored, name]
}

/** A request-path client, its errors logged through pino, failing fast while its connection is down. */
export function createRedis(url: string, t: RedisTimeouts, logger: RedisErrorLogger, name: string, extra: RedisOptions = {}): Redis {
  const client = new Redis(url, { ...requestPathRedisOptions(t), ...extra })
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
  const client = redis.duplicate({ enableOfflineQueue: true })
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
