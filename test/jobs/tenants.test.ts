import { sql } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../../drizzle/tenant/schema.js'
import { tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager, type TaskManager } from '../../src/core/jobs/task-manager.js'
import { createTenantSlots } from '../../src/core/jobs/tenant-slots.js'
import type { TenantRecord } from '../../src/core/tenancy/types.js'
import { isCluster, newRedisClient } from '../../src/core/lib/redis.js'
import { createJobsWorld, type JobsWorld, settled, silent, sleep, until } from './helpers.js'

/** Jobs running right now, per tenant id, and the most seen at once. */
const running = new Map<string, number>()
const peak = new Map<string, number>()
let bothAtOnce = 0
const finished: string[] = []

function enter(tenantId: string) {
  const n = (running.get(tenantId) ?? 0) + 1
  running.set(tenantId, n)
  peak.set(tenantId, Math.max(peak.get(tenantId) ?? 0, n))
  if ([...running.values()].filter((v) => v > 0).length > 1) bothAtOnce++
}
const leave = (tenantId: string) => running.set(tenantId, running.get(tenantId)! - 1)

const registry = {
  /** Writes a row into the tenant's database, then reads everything back: it must see only its own tenant's rows. */
  'test.isolation': tenantJob({
    payload: { marker: Type.String(), n: Type.Integer() },
    maxRetries: 0,
    async process(ctx, p) {
      enter(ctx.tenant.id)
      try {
        if (ctx.tenant.id !== p.tenantId) throw new Error(`context tenant ${ctx.tenant.id} is not the payload's ${p.tenantId}`)
        await ctx.db.insert(projects).values({ name: `${p.marker}-${p.n}` })
        await sleep(5 + Math.random() * 25)
        const [{ db }] = (await ctx.db.execute(sql`select current_database() as db`)) as unknown as [{ db: string }]
        const names = (await ctx.db.select({ name: projects.name }).from(projects)).map((r) => r.name)
        const foreign = names.filter((name) => !name.startsWith(`${p.marker}-`))
        if (db !== ctx.tenant.dbName) throw new Error(`job for ${ctx.tenant.dbName} ran on ${db}`)
        if (foreign.length > 0) throw new Error(`tenant ${p.marker} saw other tenants' rows: ${foreign.join(', ')}`)
        return { db, seen: names.length }
      } finally {
        leave(ctx.tenant.id)
      }
    },
  }),
  'test.work': tenantJob({
    payload: { n: Type.Integer(), ms: Type.Integer() },
    maxRetries: 0,
    async process(ctx, p) {
      enter(ctx.tenant.id)
      try {
        await sleep(p.ms)
        finished.push(`${ctx.tenant.id}:${p.n}`)
        return { n: p.n }
      } finally {
        leave(ctx.tenant.id)
      }
    },
  }),
}

let world: JobsWorld
/** Redis server time in ms: the clock tenant-slot leases are scored by. */
const redisNowMs = async (redis: Redis) => {
  const [s, us] = await redis.time()
  return Number(s) * 1000 + Math.floor(Number(us) / 1000)
}
let tasks: TaskManager<typeof registry>
let a: TenantRecord
let b: TenantRecord

beforeAll(async () => {
  world = await createJobsWorld({ JOB_TENANT_CONCURRENCY: '2' })
  tasks = createTaskManager({ registry, deps: {}, ...world.services, config: world.env.config, logger: silent })
  a = await world.tenant('alpha')
  b = await world.tenant('beta')
})
afterAll(async () => {
  await tasks?.close()
  await world?.close()
})

describe('tenant context', () => {
  it("two tenants' jobs interleaved on one worker (concurrency 4) each see only their own database", async () => {
    const workers = tasks.startWorkers({ scopes: ['tenant'], concurrency: 4 })
    await workers.ready()
    const submitted = []
    for (let n = 0; n < 20; n++) {
      for (const t of [a, b])
        submitted.push({ tenant: t, job: await tasks.submit('test.isolation', { tenantId: t.id, marker: t.slug, n }) })
    }
    const views = await Promise.all(submitted.map(({ tenant, job }) => settled(tasks, job.id, { tenantId: tenant.id })))
    expect(views.filter((v) => v.status !== 'completed').map((v) => v.errorLog)).toEqual([])
    expect(bothAtOnce).toBeGreaterThan(0) // they really ran side by side
    for (const t of [a, b]) {
      const names = await world.services.pools.withTenant(t, (db) => db.select({ name: projects.name }).from(projects))
      expect(names).toHaveLength(20)
      expect(names.every((r) => r.name.startsWith(`${t.slug}-`))).toBe(true)
    }
    await workers.close()
  })
})

describe('noisy neighbours', () => {
  it("tenant A's 200 queued jobs do not starve tenant B's one: B finishes before A's 20th", async () => {
    running.clear()
    peak.clear()
    const completedBefore = await tasks.queues.tenant.getCompletedCount()
    const aJobs = await tasks.submitMany(
      'test.work',
      Array.from({ length: 200 }, (_, n) => ({ tenantId: a.id, n, ms: 100 })),
    )
    const workers = tasks.startWorkers({ scopes: ['tenant'], concurrency: 4 })
    await workers.ready()
    await until(async () => finished.length > 0, 10_000, 'A to start') // B arrives after A's backlog is being worked on
    const bJob = await tasks.submit('test.work', { tenantId: b.id, n: 0, ms: 100 })
    const bView = await settled(tasks, bJob.id, { tenantId: b.id })
    expect(bView.status).toBe('completed')

    const bAt = finished.indexOf(`${b.id}:0`)
    const aBefore = finished.slice(0, bAt).filter((f) => f.startsWith(a.id)).length
    expect(aBefore).toBeLessThan(19)
    // The cap held across the whole run, and bouncing off it did not cost A any attempts.
    expect(peak.get(a.id)).toBeLessThanOrEqual(2)
    const aRecords = await tasks.listJobs({ tenantId: a.id, type: 'test.work', limit: 200 })
    expect(aRecords).toHaveLength(200)
    expect(aRecords.filter((r) => r.status === 'failed')).toEqual([])
    expect(aRecords.filter((r) => r.status === 'running').length).toBeLessThanOrEqual(2)
    expect(aRecords.every((r) => r.retryCount === 0)).toBe(true)

    await workers.close()
    // After a graceful close nothing holds a slot, and BullMQ's view matches the records.
    expect(await tasks.slots.holders(a.id)).toEqual([])
    const done = new Set((await tasks.listJobs({ tenantId: a.id, type: 'test.work', status: 'completed', limit: 200 })).map((r) => r.id))
    const counts = await tasks.queues.tenant.getJobCounts('completed', 'failed', 'active')
    expect(counts).toMatchObject({ failed: 0, active: 0, completed: completedBefore + done.size + 1 }) // A's completed + B
    expect(aJobs.filter((j) => done.has(j.id)).length).toBe(done.size)
  })
})

describe('tenant slots', () => {
  it('caps holders; the same job re-enters its slot; a live lease is renewed; a crashed holder frees its slot after the lease', async () => {
    const prefix = `${world.env.name}:slots-test`
    const crashing = newRedisClient(world.env.config)
    const other = newRedisClient(world.env.config)
    try {
      const dying = createTenantSlots(crashing, { prefix, cap: 1, leaseMs: 400 })
      const live = createTenantSlots(other, { prefix, cap: 1, leaseMs: 400 })
      const lost = await dying.tryAcquire(a.id, 'job-1')
      expect(lost).toBeDefined()
      crashing.disconnect() // the worker dies: no release, no renewals
      expect(await live.tryAcquire(a.id, 'job-2')).toBeUndefined()
      // job-1, picked up again by another worker after a stall, gets its slot back.
      const again = await live.tryAcquire(a.id, 'job-1')
      expect(again).toBeDefined()
      await again!.release()
      expect(await live.holders(a.id)).toEqual([])

      const held = await live.tryAcquire(b.id, 'job-3')
      expect(held).toBeDefined()
      // The dead instance can do nothing more: its commands fail (one Redis), or never settle (a Redis.Cluster,
      // ioredis 6, once disconnect() is called: they wait in its offline queue).
      const deadAnswer = dying.holders(b.id).catch(() => 'closed')
      expect(await (isCluster(crashing) ? Promise.race([deadAnswer, sleep(1000).then(() => 'closed')]) : deadAnswer)).toBe('closed')
      // Wait on Redis' clock (the one leases are scored by) until the first lease would have lapsed: renewals keep it.
      const firstExpiry = Number(await other.zscore(`${prefix}:tenant-slots:${b.id}`, 'job-3'))
      await until(async () => (await redisNowMs(other)) > firstExpiry + 100, 15_000, 'the first lease to be past')
      expect(await live.holders(b.id)).toEqual(['job-3'])
      await held!.release()

      // Stops the dead instance's renew timer (at once: the send after it fails, or on a cluster never settles).
      void lost!.release().catch(() => {})
    } finally {
      crashing.disconnect()
      other.disconnect()
    }
  })

  it('commands made in one tick (sent as one batch) keep the cap and their order', async () => {
    const prefix = `${world.env.name}:slots-batch`
    const client = newRedisClient(world.env.config)
    const otherProcess = newRedisClient(world.env.config)
    try {
      const slots = createTenantSlots(client, { prefix, cap: 3, leaseMs: 5000 })
      const other = createTenantSlots(otherProcess, { prefix, cap: 3, leaseMs: 5000 })
      // Ten acquires at once for A (and one for B): the first three of A's win, in the order they were asked.
      const [bSlot, ...aSlots] = await Promise.all([
        slots.tryAcquire(b.id, 'b-0'),
        ...Array.from({ length: 10 }, (_, i) => slots.tryAcquire(a.id, `a-${i}`)),
      ])
      expect(bSlot).toBeDefined()
      expect(aSlots.map((s) => s !== undefined)).toEqual([true, true, true, false, false, false, false, false, false, false])
      expect((await other.holders(a.id)).sort()).toEqual(['a-0', 'a-1', 'a-2'])
      // A release made before an acquire in the same tick frees the slot for that acquire.
      const release = aSlots[0]!.release()
      const next = slots.tryAcquire(a.id, 'a-3')
      const held = slots.holders(a.id)
      await release
      expect(await next).toBeDefined()
      expect((await held).sort()).toEqual(['a-1', 'a-2', 'a-3'])
      // Another process's view agrees: the cap is still 3 and it gets nothing.
      expect(await other.tryAcquire(a.id, 'elsewhere')).toBeUndefined()
      for (const s of [bSlot, aSlots[1], aSlots[2], await next]) await s!.release()
      expect(await other.holders(a.id)).toEqual([])
      expect(await other.holders(b.id)).toEqual([])
    } finally {
      client.disconnect()
      otherProcess.disconnect()
    }
  })

  it('an abandoned lease expires', async () => {
    const prefix = `${world.env.name}:slots-expiry`
    const client = newRedisClient(world.env.config)
    try {
      const slots = createTenantSlots(client, { prefix, cap: 1, leaseMs: 300 })
      // Write a lease the way a dead worker leaves it: held, never renewed again.
      const expiry = (await redisNowMs(client)) + 300
      await client.zadd(`${prefix}:tenant-slots:${a.id}`, expiry, 'dead-job')
      expect(await slots.tryAcquire(a.id, 'new-job')).toBeUndefined()
      await until(async () => (await redisNowMs(client)) > expiry, 15_000, "Redis' clock to pass the lease")
      const slot = await slots.tryAcquire(a.id, 'new-job')
      expect(slot).toBeDefined()
      await slot!.release()
    } finally {
      client.disconnect()
    }
  })
})
