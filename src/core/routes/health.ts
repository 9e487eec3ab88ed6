/**
 * Liveness (the process answers, with its version and uptime) and readiness: its dependencies answer (host DB, Redis) and the tenant
 * pool manager is not starved (waiters keep timing out with POOL_EXHAUSTED and none was served since the
 * first of those timeouts, the last within 10 s: see PoolStats.starved), so a load balancer stops sending
 * new work to a process that can't serve it. Readiness is also 503 while the process sheds load
 * (plugins/external/under-pressure.ts), with `checks.pressure: 'down'` (the field appears only then).
 * Neither probe is ever shed itself.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { APP_VERSION } from '../lib/version.js'

const Check = Type.Union([Type.Literal('up'), Type.Literal('down')])
const Ready = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  checks: Type.Object({ database: Check, redis: Check, pools: Check, pressure: Type.Optional(Type.Literal('down')) }),
  servers: Type.Optional(
    Type.Record(Type.String(), Type.Object({ status: Check, pools: Check }), {
      description:
        'Each database server (core_db_servers): it answers, and its pool budget is not starved. Reported, not counted in status: a server down affects its own tenants only, and taking every process out of the load balancer for it would take everyone down',
    }),
  ),
})
const Live = Type.Object({
  status: Type.Literal('ok'),
  version: Type.String({ description: 'The app version (package.json)' }),
  uptimeSeconds: Type.Number({ description: 'Seconds since this process started' }),
})
const probe = { rateLimit: false, underPressure: false }

const within = <T>(ms: number, p: Promise<T>) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())])

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/', { config: probe, schema: { tags: ['health'], summary: 'Liveness: the process answers', response: { 200: Live } } }, async () => ({
    status: 'ok' as const,
    version: APP_VERSION,
    uptimeSeconds: Math.round(process.uptime()),
  }))

  fastify.get('/ready', { config: probe, schema: { tags: ['health'], summary: 'Readiness: the host database and Redis answer', response: { 200: Ready, 503: Ready } } }, async (req, reply) => {
    const probe = async (name: string, fn: () => Promise<unknown>) => {
      try {
        await within(1500, fn())
        return 'up' as const
      } catch (err) {
        req.log.warn({ err, dependency: name }, 'readiness check failed')
        return 'down' as const
      }
    }
    const [database, redis, reachable] = await Promise.all([
      probe('database', () => fastify.host.sql`select 1`),
      probe('redis', () => fastify.redis.ping()),
      within(2000, fastify.tenancy.provisioner.servers.probe(1500)).catch(() => ({}) as Record<string, 'up' | 'down'>),
    ])
    const stats = fastify.tenancy.pools.stats()
    const pools = stats.starved ? ('down' as const) : ('up' as const)
    const servers = Object.fromEntries(
      Object.entries(reachable).map(([name, status]) => [name, { status, pools: stats.servers[name]?.starved ? ('down' as const) : ('up' as const) }]),
    )
    for (const [name, s] of Object.entries(servers)) if (s.status === 'down') req.log.warn({ dependency: 'server', server: name }, 'database server unreachable')
    if (pools === 'down') req.log.warn({ dependency: 'pools' }, 'readiness check failed: tenant pool budget starved')
    const pressure = fastify.isUnderPressure()
    if (pressure) req.log.warn({ dependency: 'pressure', ...fastify.memoryUsage() }, 'readiness check failed: shedding load')
    const ok = database === 'up' && redis === 'up' && pools === 'up' && !pressure
    if (!ok) reply.header('retry-after', '5')
    const checks = { database, redis, pools, ...(pressure ? { pressure: 'down' as const } : {}) }
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks, servers })
  })
}

export default health
