/**
 * "This user's sessions started before T are void": core_users.sessions_valid_after, set when a
 * password someone else may know stops counting (Google linking an unverified account, a password
 * change). requireUser checks the column whenever it re-reads the user (every 30 s per session);
 * this module closes that window: `publish(userId, at)` records the cutoff in this process at once
 * and, through Redis pub/sub on `channel`, in every other one, and `validAfter(userId)` is an
 * in-memory lookup on each request. A missed message (subscriber reconnecting) falls back to the
 * 30 s re-read, which the entries outlive.
 */
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

export interface SessionRevocationsDeps {
  redis: Redis
  channel: string
  onError?: (err: unknown, what: string) => void
}

export function createSessionRevocations({ redis, channel, onError }: SessionRevocationsDeps) {
  // Longer than the user snapshot's 30 s: by the time an entry goes, the DB re-read enforces the cutoff.
  const cutoffs = new LRUCache<string, number>({ max: 50_000, ttl: 5 * 60_000 })
  const note = (userId: string, ms: number) => {
    if (ms > (cutoffs.get(userId) ?? 0)) cutoffs.set(userId, ms)
  }

  const subscriber = redis.duplicate({ enableOfflineQueue: true }) // subscribes before it is connected
  subscriber.on('error', (err) => onError?.(err, 'session-revocations subscriber'))
  subscriber.on('message', (ch: string, message: string) => {
    if (ch !== channel) return
    const [userId, ms] = message.split(' ')
    if (userId && Number.isFinite(Number(ms))) note(userId, Number(ms))
  })
  const ready = subscriber.subscribe(channel).then(() => undefined)

  return {
    ready,
    /** The latest cutoff (ms since epoch) this process heard of for the user, if any. */
    validAfter: (userId: string): number | undefined => cutoffs.get(userId),
    /** Sessions of `userId` started before `at` end everywhere (the caller has written sessions_valid_after = at). */
    async publish(userId: string, at: Date) {
      note(userId, at.getTime())
      await redis.publish(channel, `${userId} ${at.getTime()}`)
    },
    async close() {
      await ready.catch(() => {})
      subscriber.disconnect()
    },
  }
}

export type SessionRevocations = ReturnType<typeof createSessionRevocations>
