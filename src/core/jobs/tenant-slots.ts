/**
 * Per-tenant concurrency cap across every worker process: a counting semaphore in Redis.
 *
 * Each tenant has a sorted set `${prefix}:tenant-slots:${tenantId}` whose members are the job ids
 * holding a slot, scored by when their lease expires (Redis server time, so worker clocks don't
 * matter). Acquire drops expired leases, then grants a slot if the job already holds one (a job picked
 * up again after its worker died) or if fewer than `cap` are held. A running job renews its lease; a
 * worker killed mid-job stops renewing, so its slot frees itself after `leaseMs` instead of leaking.
 *
 * Every job takes and gives back a slot, so these are the worker's most frequent Redis commands. They
 * are queued and sent together once per event-loop turn as one script call (one write and one wake-up
 * of Redis instead of one per command), run in the order they were made: a release always reaches Redis before a
 * later acquire or holders() of this process. Leases are renewed by one timer for all held slots.
 * On a Redis Cluster the tenants' keys are in different slots, which one script call can't span: a batch
 * is then split into one call per key (still sent together: the cluster client pipelines them per node).
 */
import type { Redis } from 'ioredis'
import { defineScript, isCluster } from '../lib/redis.js'

// One call runs a batch of slot commands in order, each on its own key: KEYS[i] with op ARGV[1 + 2i] and
// member ARGV[2 + 2i] (ARGV[1], ARGV[2]: cap and lease). Ops: a = acquire (drop expired leases, then grant
// when the member already holds a slot or fewer than cap are held; 1/0), r = renew a held lease (1/0, never
// re-adds a lapsed one), x = release, h = holders with a live lease.
const BATCH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local key, op, member = KEYS[i], ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if op == 'a' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZSCORE', key, member) or redis.call('ZCARD', key) < cap then
      redis.call('ZADD', key, now + lease, member)
      redis.call('PEXPIRE', key, lease)
      out[i] = 1
    else
      out[i] = 0
    end
  elseif op == 'r' then
    if redis.call('ZADD', key, 'XX', 'CH', now + lease, member) == 1 then
      redis.call('PEXPIRE', key, lease)
      out[i] = 1
    else
      out[i] = 0
    end
  elseif op == 'x' then
    out[i] = redis.call('ZREM', key, member)
  else
    out[i] = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  end
end
return out`

type Op = 'a' | 'r' | 'x' | 'h'
/** Commands per script call: keeps one call from holding up Redis. */
const MAX_BATCH = 500

interface SlotCommands {
  tkSlots(numKeys: number, ...keysThenArgs: (string | number)[]): Promise<unknown[]>
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
  defineScript(redis, 'tkSlots', { lua: BATCH })
  const commands = redis as unknown as SlotCommands
  const keyOf = (tenantId: string) => `${opts.prefix}:tenant-slots:${tenantId}`
  // Renew well before expiry; a renewal that finds the slot gone (lease lapsed during a long GC pause or
  // a Redis outage) does not bring it back: the job finishes, the cap is briefly exceeded, nothing is lost.
  const renewEveryMs = Math.max(50, Math.floor(opts.leaseMs / 3))

  let queued: { op: Op; key: string; member: string; resolve: (reply: unknown) => void; reject: (err: unknown) => void }[] = []
  const cluster = isCluster(redis)
  const flush = () => {
    if (cluster) {
      const byKey = new Map<string, typeof queued>()
      for (const c of queued) byKey.get(c.key)?.push(c) ?? byKey.set(c.key, [c])
      for (const group of byKey.values()) for (let i = 0; i < group.length; i += MAX_BATCH) call(group.slice(i, i + MAX_BATCH))
    } else {
      for (let i = 0; i < queued.length; i += MAX_BATCH) call(queued.slice(i, i + MAX_BATCH))
    }
    queued = []
  }
  const call = (batch: typeof queued) => {
    const keys = batch.map((c) => c.key)
    const args: (string | number)[] = [opts.cap, opts.leaseMs]
    for (const c of batch) args.push(c.op, c.member)
    commands.tkSlots(keys.length, ...keys, ...args).then(
      (replies) => {
        for (const [i, c] of batch.entries()) c.resolve(replies[i])
      },
      (err: unknown) => {
        for (const c of batch) c.reject(err)
      },
    )
  }
  const send = <T>(op: Op, key: string, member = ''): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (queued.length === 0) setImmediate(flush)
      queued.push({ op, key, member, resolve: resolve as (reply: unknown) => void, reject })
    })

  // Held slots of this process, renewed together.
  const held = new Set<{ key: string; jobId: string }>()
  let renewTimer: NodeJS.Timeout | undefined
  const renewAll = () => {
    for (const h of held) send('r', h.key, h.jobId).catch(() => {})
  }

  return {
    async tryAcquire(tenantId, jobId) {
      const key = keyOf(tenantId)
      const granted = await send<number>('a', key, jobId)
      if (granted !== 1) return undefined
      const holder = { key, jobId }
      held.add(holder)
      if (!renewTimer) {
        renewTimer = setInterval(renewAll, renewEveryMs)
        renewTimer.unref()
      }
      let released: Promise<void> | undefined
      return {
        release() {
          released ??= (async () => {
            held.delete(holder)
            if (held.size === 0 && renewTimer) {
              clearInterval(renewTimer)
              renewTimer = undefined
            }
            await send('x', key, jobId)
          })()
          return released
        },
      }
    },
    holders(tenantId) {
      return send<string[]>('h', keyOf(tenantId))
    },
  }
}
