/**
 * The kit on a real Redis Cluster (REDIS_CLUSTER, three masters on 127.0.0.1:7001-7003 started by
 * .ci/redis-cluster): two app instances and an in-process worker, every client a `Redis.Cluster`.
 * Sessions (login on one instance, used on the other, logout revokes everywhere), BullMQ (a system job,
 * a tenant job, a workflow and one whose step fails then is compensated; their records land), the
 * tenant concurrency slots' script, login rate limits counted in the cluster, a realtime event published
 * on one instance and streamed by the other, and the catalog invalidated across instances by pub/sub.
 * Then the layout: each queue in one slot of its own, connection sets in one slot, keys on every master.
 */
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { eq, like } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { projects } from '../drizzle/tenant/schema.js'
import { tenants } from '../drizzle/host/schema.js'
import { queuePrefix } from '../src/core/jobs/queues.js'
import { systemJob, tenantJob } from '../src/core/jobs/registry.js'
import { tenantWorkflow } from '../src/core/jobs/workflows.js'
import { isCluster } from '../src/core/lib/redis.js'
import { runDoctor } from '../src/doctor.js'
import { type PlanSeed, seedPlans } from '../src/features/billing/plans.js'
import { LOGIN_FAILURES_PER_IP } from '../src/features/auth/login-throttle.js'
import { realtimeKeys } from '../src/features/realtime/stream.js'
import { startWorkers, type WorkerRuntime } from '../src/worker.js'
import { buildApp } from './helpers/build-app.js'
import { createClient } from './helpers/client.js'
import { CLUSTER_PORTS, CLUSTER_VARS, clusterKeys, dropClusterKeys, ensureRedisCluster } from './helpers/redis-cluster.js'
import { type TenantFixture, tenantWith } from './helpers/tenant-fixtures.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'
import { waitFor } from './helpers/wait-for.js'
import { settled } from './jobs/helpers.js'

const unavailable = await ensureRedisCluster()
if (unavailable) console.warn(`skipping the Redis Cluster tests: ${unavailable}`)

const plan: PlanSeed = {
  key: 'free',
  name: 'free',
  amountMonthly: 0,
  amountYearly: 0,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members', 'api_access'],
  limits: { members: null, projects: null, apiKeys: null },
  tierLevel: 0,
  sortOrder: 0,
}

const ran: string[] = []
const FLOW = tenantWorkflow('cluster.flow', {
  payload: { tag: Type.String(), failAt: Type.Optional(Type.String()) },
  steps: [
    {
      name: 'first',
      maxRetries: 0,
      async run({ payload }, step) {
        await step.db.insert(projects).values({ name: `flow-${payload.tag}` })
        return { made: `flow-${payload.tag}` }
      },
      async compensate({ payload }, step) {
        await step.db.delete(projects).where(eq(projects.name, `flow-${payload.tag}`))
        ran.push(`undo:${payload.tag}`)
      },
    },
    {
      name: 'second',
      maxRetries: 0,
      run({ payload, previous }) {
        if (payload.failAt === 'second') throw new Error('second step down')
        return { after: (previous as { made: string }).made }
      },
    },
  ],
})
const JOBS = {
  ...FLOW,
  'cluster.sys': systemJob({
    payload: Type.Object({ n: Type.Integer() }),
    maxRetries: 0,
    async process(_ctx, p) {
      ran.push(`sys:${p.n}`)
      return { doubled: p.n * 2 }
    },
  }),
  'cluster.tenant': tenantJob({
    payload: { name: Type.String() },
    maxRetries: 0,
    async process(ctx, p) {
      const [row] = await ctx.db.insert(projects).values({ name: p.name }).returning()
      return { projectId: row!.id }
    },
  }),
}

describe.skipIf(unavailable)('on a Redis Cluster', () => {
  let env: TestEnv
  let one: FastifyInstance
  let two: FastifyInstance
  let runtime: WorkerRuntime
  let t: TenantFixture
  let closed = false

  beforeAll(async () => {
    // Heartbeats every second: the connection slots are refreshed (a pipeline) while the stream is open.
    env = await createTestEnv({ ...CLUSTER_VARS, REALTIME_HEARTBEAT_S: '1' })
    one = await buildApp(env.config)
    two = await buildApp(env.config)
    await seedPlans(one.host.db, [plan])
    runtime = await startWorkers(one.services, { registry: JOBS, concurrency: 4, reconcileIntervalMs: 0 })
    t = await tenantWith(one)
  }, 120_000)
  afterAll(async () => {
    if (!closed) await runtime?.close()
    await one?.close()
    await two?.close()
    if (env) await dropClusterKeys(env.name)
    await env?.cleanup()
  }, 120_000)

  it('builds every client as a Redis.Cluster', () => {
    expect(env.config.redisCluster).toBe(true)
    expect([one.redis, two.redis, one.services.redis].map(isCluster)).toEqual([true, true, true])
  })

  it('refuses to boot, saying why, when REDIS_CLUSTER names a Redis that is not a cluster', async () => {
    await expect(buildApp(env.configWith({ REDIS_URL: 'redis://127.0.0.1:6379' }))).rejects.toThrow(
      /REDIS_CLUSTER=true needs REDIS_URL to name a node of a cluster/,
    )
  })

  it('doctor: checks the cluster, its size and state', async () => {
    const lines: string[] = []
    await runDoctor({ env: env.vars, out: (l) => lines.push(l) })
    const redis = lines.find((l) => l.slice(6).startsWith('redis'))
    expect(redis, lines.join('\n')).toMatch(new RegExp(`PONG \\(Redis [\\d.]+, cluster of ${CLUSTER_PORTS.length} masters\\)`))
  })

  it('sessions: a login on one instance is a session on the other; logout revokes it on both', async () => {
    const { owner } = t
    expect((await owner.c.get('/me')).statusCode).toBe(200)
    const sid = decodeURIComponent(owner.c.cookies.sid!).split('.')[0]!
    const key = `${env.config.redisPrefix}:sess:${sid}`
    expect(await one.redis.exists(key)).toBe(1)
    // The same cookie on the other instance (as behind a balancer).
    const elsewhere = createClient(two)
    elsewhere.cookies = { ...owner.c.cookies }
    expect((await elsewhere.get('/me')).json().user.email).toBe(owner.email)
    const out = await owner.c.post('/auth/logout', {})
    expect(out.statusCode, out.body).toBeLessThan(300)
    expect(await one.redis.exists(key)).toBe(0)
    expect((await elsewhere.get('/me')).statusCode).toBe(401)
    await owner.signIn()
  })

  it('jobs: a system job and a tenant job run through BullMQ and their records complete', async () => {
    const sys = await runtime.tasks.submit('cluster.sys', { n: 21 })
    const ten = await runtime.tasks.submit('cluster.tenant', { tenantId: t.id, name: 'from-a-job' })
    const sysView = await settled(runtime.tasks, sys.id, 'system')
    expect(sysView).toMatchObject({ status: 'completed', result: { doubled: 42 } })
    const tenView = await settled(runtime.tasks, ten.id, { tenantId: t.id })
    expect(tenView.status).toBe('completed')
    const tenant = await one.services.catalog.get(t.id)
    const rows = await one.services.pools.withTenant(tenant!, (db) => db.select().from(projects).where(eq(projects.name, 'from-a-job')))
    expect(rows.map((r) => r.id)).toEqual([(tenView.result as { projectId: string }).projectId])
    // Many at once (addBulk, and the tenant slots' script split per key on a cluster).
    const many = await runtime.tasks.submitMany('cluster.sys', Array.from({ length: 20 }, (_, n) => ({ n })))
    for (const job of many) expect((await settled(runtime.tasks, job.id, 'system')).status).toBe('completed')
  })

  it('workflows: a flow runs its steps in order; a failing step fails the flow and compensates the steps done', async () => {
    const ok = await runtime.tasks.submitWorkflow('cluster.flow', { tenantId: t.id, tag: 'ok' })
    const root = await settled(runtime.tasks, ok.id, { tenantId: t.id })
    expect(root).toMatchObject({ status: 'completed', result: { results: { first: { made: 'flow-ok' }, second: { after: 'flow-ok' } } } })

    const bad = await runtime.tasks.submitWorkflow('cluster.flow', { tenantId: t.id, tag: 'bad', failAt: 'second' })
    expect((await settled(runtime.tasks, bad.id, { tenantId: t.id })).status).toBe('failed')
    await waitFor(() => ran.includes('undo:bad'), { message: 'the compensation of the failed workflow' })
    const tenant = await one.services.catalog.get(t.id)
    const left = await one.services.pools.withTenant(tenant!, (db) => db.select().from(projects).where(like(projects.name, 'flow-%')))
    expect(left.map((r) => r.name)).toEqual(['flow-ok'])
  })

  it('tenant slots: concurrent acquires over several tenants (one key per call on a cluster) keep each cap', async () => {
    const slots = runtime.tasks.slots
    const tenantIds = [t.id, crypto.randomUUID(), crypto.randomUUID()]
    const got = await Promise.all(tenantIds.flatMap((id) => Array.from({ length: 8 }, (_, i) => slots.tryAcquire(id, `job-${i}`))))
    const cap = env.config.jobs.tenantConcurrency
    for (const [k, id] of tenantIds.entries()) {
      const granted = got.slice(k * 8, k * 8 + 8).filter(Boolean)
      expect(granted.length).toBe(Math.min(cap, 8))
      expect((await slots.holders(id)).length).toBe(granted.length)
    }
    await Promise.all(got.map((s) => s?.release()))
    expect(await slots.holders(tenantIds[1]!)).toEqual([])
  })

  it('rate limits: login failures from one IP are counted across instances in the cluster', async () => {
    const ip = '10.99.0.1'
    const login = (app: FastifyInstance, i: number) =>
      app.inject({ method: 'POST', url: '/auth/login', remoteAddress: ip, payload: { email: `x${i}@example.com`, password: 'wrong password' } })
    const statuses = new Set<number>()
    for (let i = 0; i < LOGIN_FAILURES_PER_IP; i++) statuses.add((await login(i % 2 ? one : two, i)).statusCode)
    expect([...statuses]).toEqual([401])
    expect((await login(one, 999)).statusCode).toBe(429)
    expect((await login(two, 1000)).statusCode).toBe(429)
  })

  it('cache invalidation: a tenant changed and invalidated on one instance is re-read on the other', async () => {
    const before = await two.services.catalog.get(t.id)
    await one.host.db.update(tenants).set({ name: 'Renamed Inc' }).where(eq(tenants.id, t.id))
    // Still cached on the other instance until the invalidation arrives.
    expect((await two.services.catalog.get(t.id))?.name).toBe(before?.name)
    await one.services.catalog.invalidate(t.id)
    await waitFor(async () => (await two.services.catalog.get(t.id))?.name === 'Renamed Inc', { message: 'the invalidation on the other instance' })
  })

  it('realtime: an event published on one instance reaches a client streaming from the other; its connection slot is renewed, then released', async () => {
    const keys = realtimeKeys(env.config.redisPrefix, true)
    // The connection's lease in the tenant's set: [member, score] (the acquire script, then heartbeats' pipeline).
    const lease = () => one.redis.zrange(keys.tenantConnections(t.id), '0', '-1', 'WITHSCORES')
    await two.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${(two.server.address() as AddressInfo).port}`
    const cookie = Object.entries(t.viewer.c.cookies)
      .map(([k, v]) => `${k}=${v}`)
      .join('; ')
    let received = ''
    let status = 0
    const req = httpRequest(`${base}/api/events/stream`, { headers: { accept: 'text/event-stream', cookie, 'x-tenant-id': t.slug } }, (res) => {
      status = res.statusCode ?? 0
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        received += chunk
      })
    })
    req.on('error', () => {})
    req.end()
    try {
      await waitFor(() => status === 200 && received.length > 0, { message: 'the stream to open', timeout: 10_000 })
      const created = await t.as(t.owner).post('/projects', { name: 'live-on-cluster' })
      expect(created.statusCode, created.body).toBe(201)
      await waitFor(() => received.includes('project.created') && received.includes('live-on-cluster'), {
        message: 'the realtime event on the other instance',
        timeout: 10_000,
      })
      const [member, first] = await lease()
      expect(member).toBeDefined()
      expect(await one.redis.zscore(keys.userConnections(t.viewer.id), member!)).toBe(first)
      await waitFor(async () => Number((await lease())[1]) > Number(first), { message: 'a heartbeat to renew the lease', timeout: 5000 })
    } finally {
      req.destroy()
    }
    // Released at once (MULTI over the tenant's and the user's set), not left to lapse (8 s here).
    await waitFor(async () => (await lease()).length === 0 && (await one.redis.zcard(keys.userConnections(t.viewer.id))) === 0, {
      message: 'the connection slot released',
      timeout: 4000,
    })
  })

  it('layout: each queue in a slot of its own, connection sets in one slot, keys on every master', async () => {
    const { redisPrefix } = env.config
    const slot = async (key: string) => Number(await one.redis.cluster('KEYSLOT', key))
    const system = queuePrefix(env.config, 'system')
    const tenant = queuePrefix(env.config, 'tenant')
    expect([system, tenant]).toEqual([`{${redisPrefix}:system}`, `{${redisPrefix}:tenant}`])
    expect(await slot(`${system}:system:wait`)).toBe(await slot(`${system}:system:meta`))
    expect(await slot(`${system}:system:wait`)).not.toBe(await slot(`${tenant}:tenant:wait`))
    // The scheduler's ticks (the worker's third queue) were installed under their own tagged prefix.
    expect(runtime.scheduler?.queue.opts.prefix).toBe(`{${redisPrefix}:schedules}`)
    expect((await runtime.scheduler!.queue.getJobSchedulers()).length).toBeGreaterThan(0)
    const keys = realtimeKeys(redisPrefix, true)
    expect(await slot(keys.tenantConnections(t.id))).toBe(await slot(keys.userConnections(t.owner.id)))
    // The world's keys (sessions, queues, rate limits, replay buffers) are spread over the masters.
    const perMaster = await clusterKeys(env.name)
    expect([...perMaster.keys()]).toEqual(CLUSTER_PORTS)
    const used = [...perMaster.values()].filter((k) => k.length > 0).length
    expect(used, JSON.stringify(Object.fromEntries(perMaster))).toBe(CLUSTER_PORTS.length)
  })

  it('closing the worker closes its cluster connections (BullMQ leaves a client it was given open)', async () => {
    const given = [...runtime.workers.workers, runtime.scheduler!.worker].map((w) => w.opts.connection as unknown as Cluster)
    expect(given.map((c) => isCluster(c as unknown as Redis))).toEqual(given.map(() => true))
    // Connected to the cluster's nodes (BullMQ runs its commands on it), then to none.
    const nodes = () => given.map((c) => c.nodes('all').length)
    expect(nodes().every((n) => n > 0), String(nodes())).toBe(true)
    await runtime.close(5000)
    closed = true
    expect(nodes()).toEqual(given.map(() => 0))
  })
})
