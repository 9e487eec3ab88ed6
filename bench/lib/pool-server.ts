/**
 * The server half of bench/pool-manager.ts, run as its own process so autocannon does not share its
 * event loop: Fastify, one route `/t/:n` → pools.withTenant(tenant n) → `select 1`, and `/stats`.
 * Reads BENCH_PREFIX, BENCH_TENANTS, BENCH_APP_URL and the POOL_* settings from the environment.
 */
import Fastify from 'fastify'
import { uuidv7 } from 'uuidv7'
import { withDatabase } from '../../src/core/db/connect.js'
import { createPoolManager } from '../../src/core/tenancy/pool-manager.js'
import type { PoolTarget } from '../../src/core/tenancy/pool-manager.js'

const env = (name: string, fallback?: string) => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}
const prefix = env('BENCH_PREFIX')
const count = Number(env('BENCH_TENANTS'))
const appUrl = env('BENCH_APP_URL')

const tenants: PoolTarget[] = Array.from({ length: count }, (_, i) => ({
  id: uuidv7(),
  dbUrl: withDatabase(appUrl, `${prefix}_t${i}`),
  poolerUrl: undefined,
  maxConnections: undefined,
}))

const pools = createPoolManager({
  maxPerTenant: Number(env('POOL_MAX_PER_TENANT', '5')),
  maxTenants: Number(env('POOL_MAX_TENANTS', '50')),
  idleTimeoutS: Number(env('POOL_IDLE_TIMEOUT_S', '60')),
  connectionBudget: Number(env('POOL_CONNECTION_BUDGET', '40')),
  acquireTimeoutMs: Number(env('POOL_ACQUIRE_TIMEOUT_MS', '2000')),
})

let maxReserved = 0
let failures = 0
const failureCodes: Record<string, number> = {}

const app = Fastify({ logger: false })
app.get<{ Params: { n: string } }>('/t/:n', async (req) => {
  const tenant = tenants[Number(req.params.n)]
  if (!tenant) throw Object.assign(new Error('no such tenant'), { statusCode: 404 })
  try {
    const [row] = await pools.withTenant(tenant, (db) => db.$client`select 1 as one`)
    maxReserved = Math.max(maxReserved, pools.stats().reservedConnections)
    return { one: row?.one }
  } catch (err) {
    failures++
    const code = String((err as { code?: unknown }).code ?? 'unknown')
    failureCodes[code] = (failureCodes[code] ?? 0) + 1
    throw err
  }
})
app.get('/stats', async () => ({ ...pools.stats(), maxReserved, failures, failureCodes }))
app.post('/stats/reset', async () => {
  maxReserved = pools.stats().reservedConnections
  failures = 0
  for (const k of Object.keys(failureCodes)) delete failureCodes[k]
  return {}
})

const address = await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write(`listening ${address}\n`)

const shutdown = async () => {
  await app.close()
  await pools.close()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
