/**
 * The server half of bench/fleet-traffic.ts, its own process so autocannon does not share its event loop.
 * The kit's services from the environment (the bench's test world), and one route through the kit's real
 * tenant path: `GET /r/:kind/:n` (kind s = the n-th shared tenant, d = the n-th database tenant) →
 * catalog.get(id) (cached, invalidated across processes) → pools.withTenant(record) → a drizzle SELECT of
 * one project on the tenant's TenantDb (RLS-scoped in the shared database, its own database otherwise).
 * `/stats` answers the pool manager's stats and the failures by code since the last `/stats/reset`.
 */
import Fastify from 'fastify'
import { pino } from 'pino'
import { projects } from '../../drizzle/tenant/schema.js'
import { loadConfig } from '../../src/core/config.js'
import { createServices } from '../../src/services.js'

const services = createServices(loadConfig(process.env), pino({ level: 'silent' }))
const rows = await services.host.sql<{ id: string; isolation: string }[]>`
  select id, isolation from core_tenants where status = 'active' order by created_at, id`
const ids = { s: rows.filter((r) => r.isolation === 'shared').map((r) => r.id), d: rows.filter((r) => r.isolation === 'database').map((r) => r.id) }

let failures = 0
const failureCodes: Record<string, number> = {}
let maxWaiters = 0

const app = Fastify({ logger: false })
app.get<{ Params: { kind: 's' | 'd'; n: string } }>('/r/:kind/:n', async (req, reply) => {
  const id = ids[req.params.kind]?.[Number(req.params.n)]
  const tenant = id ? await services.catalog.get(id) : undefined
  if (!tenant) return reply.code(404).send({ error: 'no such tenant' })
  try {
    const [row] = await services.pools.withTenant(tenant, (db) => db.select({ id: projects.id, name: projects.name }).from(projects).limit(1))
    maxWaiters = Math.max(maxWaiters, services.pools.stats().waiters)
    if (!row) return reply.code(500).send({ error: 'tenant has no project' })
    return row
  } catch (err) {
    failures++
    const code = String((err as { code?: unknown }).code ?? 'unknown')
    failureCodes[code] = (failureCodes[code] ?? 0) + 1
    throw err
  }
})
app.get('/stats', async () => ({ ...services.pools.stats(), maxWaiters, failures, failureCodes }))
app.post('/stats/reset', async () => {
  failures = 0
  maxWaiters = 0
  for (const k of Object.keys(failureCodes)) delete failureCodes[k]
  return {}
})

const address = await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`listening ${address} ${ids.s.length} ${ids.d.length}\n`)

const shutdown = async () => {
  await app.close()
  await services.close()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
