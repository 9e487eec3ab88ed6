/**
 * Pool manager under load: 300 tenant databases, a budget of 40 connections, uniform random tenants.
 *
 *   npx tsx bench/pool-manager.ts            (BENCH_TENANTS, BENCH_DURATION_S, BENCH_CONNECTIONS,
 *                                             POOL_MAX_PER_TENANT, POOL_CONNECTION_BUDGET override)
 *
 * A Fastify server (its own process, bench/lib/pool-server.ts) answers `/t/:n` through
 * pools.withTenant(tenant n) → `select 1`. autocannon first hits ONE tenant (the baseline: its pool
 * stays warm), then random tenants among 300 (nearly every request needs a pool that is not open, so
 * the figure is bound by Postgres' connection setup rate, ~230/s on 2 cores). Meanwhile
 * pg_stat_activity is sampled to show the budget holds. The databases are dropped at the end.
 *
 * Measured 2026-11-24 (2 shared cores, 50 autocannon connections, 60 s per run, 0 errors and 0 non-2xx):
 *   5 per tenant: 1 tenant 11,210 req/s (p50 2 / p99 46 ms); 300 tenants 196 req/s (p50 215 / p99 936 ms),
 *                 ratio 0.017, max 12 tenant connections seen, 40 slots reserved.
 *   1 per tenant: 1 tenant 12,431 req/s (p50 2 / p99 18 ms); 300 tenants 279 req/s (p50 158 / p99 717 ms),
 *                 ratio 0.022, max 40 tenant connections seen, 40 slots reserved.
 * 2026-12-03, after pools open with one slot while other tenants wait (5 per tenant, 30 s, load average 7–11 from
 * other work): 1 tenant 10,430 req/s (p50 2 / p99 32 ms, 5 connections); 300 tenants 182 req/s (p50 316 / p99
 * 481 ms), max 39 tenant connections seen: the "1 per tenant" shape without giving a hot tenant fewer connections.
 * In-process A/B on 100 databases (pools.withTenant → select 1, 50 callers, budget 40, 5 per tenant, alternated,
 * load ~6): before 185 / 107 calls/s, p99 524 / 920 ms with 8 pools; after 309 / 255 calls/s, p99 478 / 572 ms with 36.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { connect } from '../src/core/db/connect.js'
import { runAutocannon, type AutocannonResult } from './lib/autocannon.js'
import { ADMIN_URL, APP_URL, connectionsTo, createTenantDatabases, dropAll, ensureAppRole } from './lib/tenant-dbs.js'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 300)
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 60)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const BUDGET = process.env.POOL_CONNECTION_BUDGET ?? '40'
const PER_TENANT = process.env.POOL_MAX_PER_TENANT ?? '5'
const prefix = `tkbench_pm${randomBytes(3).toString('hex')}`

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)

let server: ReturnType<typeof spawn> | undefined
let cleaned = false
async function cleanup() {
  if (cleaned) return
  cleaned = true
  server?.kill('SIGTERM')
  const t0 = Date.now()
  const n = await dropAll(prefix)
  line('cleanup', `dropped ${n} databases in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}
process.on('SIGINT', () => {
  cleanup().finally(() => process.exit(130))
})

const admin = connect(ADMIN_URL, { max: 2, applicationName: 'tenantkit-bench-admin' })
try {
  await ensureAppRole(admin)
  const t0 = Date.now()
  await createTenantDatabases(admin, prefix, TENANTS)
  line('tenant databases', `${TENANTS} cloned from one migrated template in ${((Date.now() - t0) / 1000).toFixed(1)} s`)

  server = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./lib/pool-server.ts', import.meta.url))], {
    env: {
      ...process.env,
      BENCH_PREFIX: prefix,
      BENCH_TENANTS: String(TENANTS),
      BENCH_APP_URL: APP_URL,
      POOL_CONNECTION_BUDGET: BUDGET,
      POOL_MAX_PER_TENANT: PER_TENANT,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const base = await new Promise<string>((resolve, reject) => {
    server!.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
    server!.stdout!.on('data', (chunk: Buffer) => {
      const m = /listening (\S+)/.exec(chunk.toString())
      if (m) resolve(m[1]!)
    })
  })
  line('settings', `budget ${BUDGET} connections, ${PER_TENANT} per tenant, ${CONNECTIONS} autocannon connections, ${DURATION_S} s per run`)

  async function measure(label: string, path: () => string, seconds: number) {
    await fetch(`${base}/stats/reset`, { method: 'POST' })
    let maxSeen = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        maxSeen = Math.max(maxSeen, await connectionsTo(admin, prefix))
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    const result: AutocannonResult = await runAutocannon({
      url: base,
      connections: CONNECTIONS,
      duration: seconds,
      requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: path() }) }],
    })
    sampling = false
    await sampler
    const stats = (await (await fetch(`${base}/stats`)).json()) as { maxReserved: number; failures: number; failureCodes: object }
    if (label) {
      line(`${label} req/s`, Math.round(result.requests.average))
      line(`${label} latency p50 / p99 ms`, `${result.latency.p50} / ${result.latency.p99}`)
      line(`${label} errors / timeouts / non-2xx`, `${result.errors} / ${result.timeouts} / ${result.non2xx}`)
      if (stats.failures) line(`${label} server-side failures`, JSON.stringify(stats.failureCodes))
      line(`${label} max tenant connections seen (pg_stat_activity)`, maxSeen)
      line(`${label} max slots reserved (pool manager)`, stats.maxReserved)
    }
    return result
  }

  await measure('', () => '/t/0', 5) // warm-up: JIT, first pool
  const one = await measure('1 tenant', () => '/t/0', DURATION_S)
  const many = await measure(`${TENANTS} tenants`, () => `/t/${Math.floor(Math.random() * TENANTS)}`, DURATION_S)
  line(`ratio ${TENANTS} tenants / 1 tenant`, (many.requests.average / one.requests.average).toFixed(3))
} finally {
  await admin.end()
  await cleanup()
}
