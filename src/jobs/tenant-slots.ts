/**
 * Per-tenant concurrency cap across every worker process: a counting semaphore in Redis.
 *
 * Each tenant has a sorted set `${prefix}:tenant-slots:${tenantId}` whose members are the job ids
 * holding a slot, scored by when their lease expires (Redis server time, so worker clocks don't
 * matter). Acquire drops expired leases, then grants a slot if the job already holds one (a job picked
 * up again after its worker died) or if fewer than `cap` are held. A running job renews its lease; a
 * worker killed mid-job stops renewing, so its slot frees itself after `leaseMs` instead of leaking.
 */
import type { Redis } from 'ioredis'

const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0`

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0`

interface SlotCommands {
  tkSlotAcquire(key: string, member: string, cap: number, leaseMs: number): Promise<number>
  tkSlotRenew(key: string, member: string, leaseMs: number): Promise<number>
}

export interface TenantSlot {
  /** Stop renewing and give the slot back. Idempotent. */
  release(): Promise<void>
}

export interface TenantSlots {
  /** A slot for this job, or undefined when the tenant is at its cap. */
  tryAcquire(tenantId: string, jobId: string): Promise<TenantSlot | undefined>
  /** Job ids holding a slot now (expired leases excluded). */
  holders(tenantId: string): Promise<string[]>
}

export interface TenantSlotOptions {
  prefix: string
  /** Jobs of one tenant running at once (config.jobs.tenantConcurrency). */
  cap: number
  /** How long a slot outlives its last renewal (a crashed worker's slot comes back after this). */
  leaseMs: number
}

export function createTenantSlots(redis: Redis, opts: TenantSlotOptions): TenantSlots {
  if (!('tkSlotAcquire' in redis)) {
    redis.defineCommand('tkSlotAcquire', { numberOfKeys: 1, lua: ACQUIRE })
    redis.defineCommand('tkSlotRenew', { numberOfKeys: 1, lua: RENEW })
  }
  const commands = redis as unknown as SlotCommands
  const keyOf = (tenantId: string) => `${opts.prefix}:tenant-slots:${tenantId}`
  // Renew well before expiry; a renewal that finds the slot gone (lease lapsed during a long GC pause or
  // a Redis outage) simply stops: the job finishes, the cap is briefly exceeded, nothing is lost.
  const renewEveryMs = Math.max(50, Math.floor(opts.leaseMs / 3))

  return {
    async tryAcquire(tenantId, jobId) {
      const key = keyOf(tenantId)
      const granted = await commands.tkSlotAcquire(key, jobId, opts.cap, opts.leaseMs)
      if (granted !== 1) return undefined
      const timer = setInterval(() => {
        commands.tkSlotRenew(key, jobId, opts.leaseMs).catch(() => {})
      }, renewEveryMs)
      timer.unref()
      let released: Promise<void> | undefined
      return {
        release() {
          released ??= (async () => {
            clearInterval(timer)
            await redis.zrem(key, jobId)
          })()
          return released
        },
      }
    },
    async holders(tenantId) {
      const t = await redis.time()
      const now = Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000)
      return redis.zrangebyscore(keyOf(tenantId), `(${now}`, '+inf')
    },
  }
}
