/**
 * "This user's sessions started before T are void": core_users.sessions_valid_after, set when a
 * password someone else may know stops counting (Google linking an unverified account, a password
 * change). requireUser checks the column whenever it re-reads the user (every 30 s per session);
 * this module closes that window: `publish(userId, at)` records the cutoff in this process at once
 * and, through Redis pub/sub on `channel` (src/core/lib/invalidated-cache.ts), in every other one, and
 * `validAfter(userId)` is an in-memory lookup on each request. A missed message (subscriber
 * reconnecting) falls back to the 30 s re-read, which the entries outlive; the cutoffs already heard
 * are kept across a reconnect (they only ever tighten).
 */
import type { Redis } from 'ioredis'
import { createInvalidatedCache, createInvalidationBus, type InvalidationBus } from '../lib/invalidated-cache.js'

export interface SessionRevocationsDeps {
  /** Makes the module's own invalidation bus when `bus` is omitted. */
  redis: Redis
  /** The process' invalidation bus (one subscriber connection); when omitted one is made (and closed) here. */
  bus?: InvalidationBus
  channel: string
  onError?: (err: unknown, what: string) => void
}

export function createSessionRevocations({ redis, bus, channel, onError }: SessionRevocationsDeps) {
  // Longer than the user snapshot's 30 s: by the time an entry goes, the DB re-read enforces the cutoff.
  const cutoffs = createInvalidatedCache<string, number>({
    bus: bus ?? createInvalidationBus(redis, onError, 'session-revocations subscriber'),
    ownsBus: !bus,
    channel,
    max: 50_000,
    ttlMs: 5 * 60_000,
    onMessage(message) {
      const [userId, ms] = message.split(' ')
      if (userId && Number.isFinite(Number(ms))) note(userId, Number(ms))
    },
    keepOnReconnect: true,
  })
  const note = (userId: string, ms: number) => {
    if (ms > (cutoffs.get(userId) ?? 0)) cutoffs.set(userId, ms)
  }
  const ready = cutoffs.ready

  return {
    ready,
    /** The latest cutoff (ms since epoch) this process heard of for the user, if any. */
    validAfter: (userId: string): number | undefined => cutoffs.get(userId),
    /** Sessions of `userId` started before `at` end everywhere (the caller has written sessions_valid_after = at). */
    async publish(userId: string, at: Date) {
      note(userId, at.getTime())
      await cutoffs.publish(`${userId} ${at.getTime()}`)
    },
    async close() {
      await ready.catch(() => {})
      await cutoffs.close()
    },
  }
}

export type SessionRevocations = ReturnType<typeof createSessionRevocations>
