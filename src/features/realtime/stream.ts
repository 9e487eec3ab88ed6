/**
 * Realtime events in Redis, published once wherever they happen (API or worker) and read by every API
 * instance:
 *
 * - `<prefix>:rt:log:<tenant>`: the tenant's replay buffer, a Redis stream (XADD MAXLEN ~ REALTIME_REPLAY_MAX,
 *   expiring REALTIME_REPLAY_TTL_S after its last event). Its entry ids are the events' `seq`. A stream
 *   rather than a ring buffer in each process: it survives a restart of the instance a client was on
 *   (exactly when clients come back with Last-Event-ID), every instance reads the same history, and ids
 *   are ordered per tenant by Redis, whichever process published.
 * - `<prefix>:rt:ev:<tenant>`: the tenant's pub/sub channel. An instance subscribes (on its one realtime
 *   subscriber connection) only to the tenants it has clients of.
 *
 * One script appends, trims, refreshes the TTL and publishes `<seq> <type>\n<json>`: an event is in the
 * buffer before anyone hears of it, so a client resuming while it is published can't miss it (the hub
 * drops the duplicate by seq).
 *
 * Connection caps: one sorted set per tenant and per user, members the connection ids scored by when they
 * lapse; every instance refreshes its own connections at each heartbeat, so those of a crashed instance
 * lapse by themselves within a few heartbeats. One script checks a tenant's and a user's set together, so
 * on a Redis Cluster every connection set shares one slot (`{<prefix>:rt:conn}:…`, lib/redis.ts slotGroup);
 * the replay buffers and channels are spread by tenant (the publish script's only key is the buffer: the
 * channel is an argument, as a channel is not a key).
 */
import type { Redis } from 'ioredis'
import type { DomainEvent } from '../../core/events/domain-events.js'
import { defineScript, slotGroup } from '../../core/lib/redis.js'
import { compareSeq } from './events.js'

export const realtimeKeys = (prefix: string, cluster = false) => {
  const conn = slotGroup(prefix, 'rt:conn', cluster)
  return {
    channel: (tenantId: string) => `${prefix}:rt:ev:${tenantId}`,
    log: (tenantId: string) => `${prefix}:rt:log:${tenantId}`,
    tenantConnections: (tenantId: string) => `${conn}:t:${tenantId}`,
    userConnections: (userId: string) => `${conn}:u:${userId}`,
  }
}
export type RealtimeKeys = ReturnType<typeof realtimeKeys>

const PUBLISH = `
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[5], seq .. ' ' .. ARGV[4] .. '\\n' .. ARGV[3])
return seq`

// KEYS: tenant set, user set. ARGV: now, lapse, connection id, tenant cap, user cap, set ttl (ms). 0 ok, 1 tenant full, 2 user full.
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if tonumber(ARGV[5]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
if tonumber(ARGV[4]) > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0`

type Scripted = Redis & {
  tkRtPublish(log: string, max: number, ttlMs: number, body: string, type: string, channel: string): Promise<string>
  tkRtAcquire(
    tenantSet: string,
    userSet: string,
    now: number,
    lapse: number,
    id: string,
    tenantCap: number,
    userCap: number,
    ttlMs: number,
  ): Promise<number>
}

function scripted(redis: Redis): Scripted {
  defineScript(redis, 'tkRtPublish', { numberOfKeys: 1, lua: PUBLISH })
  defineScript(redis, 'tkRtAcquire', { numberOfKeys: 2, lua: ACQUIRE })
  return redis as Scripted
}

/** The event without its tenant (the channel names it) and seq (Redis assigns it): `{"id","type","occurredAt","data"}`. */
export const eventBody = (e: DomainEvent) => JSON.stringify({ id: e.id, type: e.type, occurredAt: e.occurredAt, data: e.data })

export function publishRealtime(
  redis: Redis,
  keys: RealtimeKeys,
  event: DomainEvent,
  opts: { replayMax: number; replayTtlMs: number },
): Promise<string> {
  return scripted(redis).tkRtPublish(
    keys.log(event.tenantId),
    opts.replayMax,
    opts.replayTtlMs,
    eventBody(event),
    event.type,
    keys.channel(event.tenantId),
  )
}

export interface ReplayEntry {
  seq: string
  type: string
  body: string
}

/**
 * The tenant's events after `after`, oldest first (at most `count`). `gap`: some events after `after`
 * are gone (trimmed past REALTIME_REPLAY_MAX, or the whole buffer expired): the client must refetch.
 * The range starts AT `after`: finding it still there proves nothing after it was trimmed (Redis 7.0
 * keeps no max-deleted id for XADD's trimming). Conservative: when `after` itself was trimmed away, the
 * answer is a gap even if its successor happens to be the oldest entry kept.
 */
export async function readSince(
  redis: Redis,
  key: string,
  after: string,
  count: number,
): Promise<{ entries: ReplayEntry[]; gap: boolean }> {
  const range = (await redis.xrange(key, after, '+', 'COUNT', count + 1)) as [string, string[]][]
  const entries = range.map(([seq, fields]) => {
    const body = fields[1] ?? '{}'
    return { seq, type: typeOf(body), body }
  })
  if (entries[0]?.seq === after) return { entries: entries.slice(1), gap: false }
  if (entries.length > 0) return { entries: entries.slice(0, count), gap: true }
  // Nothing at or after `after`: it is newer than everything (no gap), or the buffer was emptied or expired.
  const info = (await redis.xinfo('STREAM', key).catch((err: Error) => {
    if (/no such key/i.test(err.message)) return undefined
    throw err
  })) as unknown[] | undefined
  if (!info) return { entries: [], gap: true }
  const last = String(info[info.indexOf('last-generated-id') + 1] ?? '0-0')
  return { entries: [], gap: compareSeq(last, after) > 0 }
}

/** The tenant's newest event (`0-0`: none): a client that connects now starts after it. */
export async function newestSeq(redis: Redis, key: string): Promise<string> {
  const last = (await redis.xrevrange(key, '+', '-', 'COUNT', 1)) as [string, string[]][]
  return last[0]?.[0] ?? '0-0'
}

const typeOf = (body: string): string => {
  const m = /"type":"([^"]+)"/.exec(body)
  return m?.[1] ?? 'unknown'
}

export interface ConnectionCaps {
  tenant: number
  user: number
}

/** Take a connection slot: 0 taken, 1 the tenant is full, 2 the user is. */
export function acquireSlot(
  redis: Redis,
  keys: RealtimeKeys,
  who: { tenantId: string; userId: string; id: string },
  caps: ConnectionCaps,
  lapseMs: number,
): Promise<number> {
  const now = Date.now()
  return scripted(redis).tkRtAcquire(
    keys.tenantConnections(who.tenantId),
    keys.userConnections(who.userId),
    now,
    now + lapseMs,
    who.id,
    caps.tenant,
    caps.user,
    lapseMs * 2,
  )
}

/** Keep this process' connections counted (at each heartbeat). */
export async function refreshSlots(
  redis: Redis,
  keys: RealtimeKeys,
  held: Iterable<{ tenantId: string; userId: string; id: string }>,
  lapseMs: number,
): Promise<void> {
  const lapse = Date.now() + lapseMs
  const pipeline = redis.pipeline()
  const sets = new Set<string>()
  for (const c of held) {
    const t = keys.tenantConnections(c.tenantId)
    const u = keys.userConnections(c.userId)
    pipeline.zadd(t, 'XX', lapse, c.id).zadd(u, 'XX', lapse, c.id)
    sets.add(t).add(u)
  }
  for (const s of sets) pipeline.pexpire(s, lapseMs * 2)
  if (sets.size) await pipeline.exec()
}

export async function releaseSlot(redis: Redis, keys: RealtimeKeys, c: { tenantId: string; userId: string; id: string }): Promise<void> {
  await redis.multi().zrem(keys.tenantConnections(c.tenantId), c.id).zrem(keys.userConnections(c.userId), c.id).exec()
}
