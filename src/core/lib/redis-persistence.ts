/**
 * Sessions and queued jobs live in Redis. A Redis without persistence (no AOF, no RDB snapshots) loses
 * them on every restart: users are logged out, and queued jobs vanish while their records stay pending
 * (the worker's reconcile sweep re-queues those, minutes later). Checked once at boot by the API and the
 * worker, and said loudly.
 */
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'

export type RedisPersistence =
  | { checked: true; persistent: boolean; appendonly: boolean; save: string }
  | { checked: false; reason: string }

/** CONFIG GET appendonly / save. Managed Redis services often disable CONFIG: then unknown, not an error. */
export async function redisPersistence(redis: Redis): Promise<RedisPersistence> {
  try {
    const [aof, save] = await Promise.all([redis.config('GET', 'appendonly'), redis.config('GET', 'save')])
    const appendonly = (aof as string[])[1] === 'yes'
    const schedule = ((save as string[])[1] ?? '').trim()
    return { checked: true, persistent: appendonly || schedule !== '', appendonly, save: schedule }
  } catch (err) {
    return { checked: false, reason: err instanceof Error ? err.message : String(err) }
  }
}

/** Logs a warning when Redis has no persistence; never throws (a boot must not fail over a diagnostic). */
export async function warnIfRedisNotPersistent(redis: Redis, logger: Pick<Logger, 'warn' | 'info'>): Promise<RedisPersistence> {
  const p = await redisPersistence(redis)
  if (!p.checked) {
    logger.info({ reason: p.reason }, 'could not read Redis persistence settings (CONFIG unavailable); make sure AOF or RDB is on')
  } else if (!p.persistent) {
    logger.warn(
      { appendonly: p.appendonly, save: p.save },
      'Redis has no persistence (appendonly no, save ""): a Redis restart loses every session and queued job; turn on AOF (appendonly yes)',
    )
  }
  return p
}
