/**
 * What a transaction-pooling PgBouncer in front of Postgres costs a tenant's reads (docs/scaling.md, "Poolers").
 *
 * In one run, for a database tenant and a shared tenant (BENCH_ROWS projects each), BENCH_CONCURRENCY loops
 * read one project by id (the projects repository's prepared `findById`, through `pools.withTenant`) for
 * BENCH_SECONDS, in interleaved rounds (BENCH_ROUNDS), through a pool manager of its own per route:
 *   direct    the tenant's own URL, named prepared statements (what a tenant without a pooler gets)
 *   unnamed   through PgBouncer, statements unnamed (POOLER_PREPARED_STATEMENTS=false, the default: what any
 *             PgBouncer in transaction mode needs before 1.21)
 *   named     through PgBouncer with named prepared statements (POOLER_PREPARED_STATEMENTS=true), only when
 *             the PgBouncer there is 1.21+ with max_prepared_statements > 0; otherwise said and skipped
 * It prints reads/s per route and the ratio to direct, with the load average.
 *
 *   npm run bench:pooler     (the PgBouncer of .ci/pgbouncer on 127.0.0.1:6432, started if down; another one:
 *                             TENANTKIT_PGBOUNCER_PORT=<port>, forwarding every database to 127.0.0.1:5432)
 *   BENCH_ROWS 50, BENCH_CONCURRENCY 16, BENCH_SECONDS 5, BENCH_ROUNDS 3
 */
import { loadavg } from 'node:os'
import { projects } from '../drizzle/tenant/schema.js'
import { createPoolManager } from '../src/core/tenancy/pool-manager.js'
import type { PoolManager, TenantRecord } from '../src/core/tenancy/types.js'
import { createProjectsRepository } from '../src/features/projects/repository.js'
import setup from '../test/global-setup.js'
import { ensurePgBouncer, PGBOUNCER_PORT, pgbouncerConsole, viaPgBouncer } from '../test/helpers/pgbouncer.js'
import { sharedWorld } from '../test/helpers/shared-world.js'

const ROWS = Number(process.env.BENCH_ROWS ?? 50)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ')

await setup()
const unavailable = await ensurePgBouncer()
if (unavailable) throw new Error(unavailable)

// Which PgBouncer, and whether it keeps named prepared statements across transactions.
const pgbouncer = pgbouncerConsole()
const [{ version }] = (await pgbouncer.unsafe('show version')) as unknown as [{ version: string }]
const setting = ((await pgbouncer.unsafe('show config')) as unknown as { key: string; value: string }[]).find((r) => r.key === 'max_prepared_statements')
await pgbouncer.end()
const keepsNamed = Number(setting?.value ?? 0) > 0

const world = await sharedWorld({ 'pooler-db': 'database', 'pooler-shared': 'shared' })
const { env } = world
const manager = (poolerPreparedStatements: boolean) =>
  createPoolManager({
    maxPerTenant: CONCURRENCY,
    maxTenants: 10,
    idleTimeoutS: 60,
    connectionBudget: 4 * CONCURRENCY,
    acquireTimeoutMs: 30_000,
    sharedMax: CONCURRENCY,
    connectOptions: env.config.pool,
    poolerPreparedStatements,
  })

interface Route {
  name: string
  pools: PoolManager
  through: (t: TenantRecord) => TenantRecord
}
const direct = (t: TenantRecord): TenantRecord => ({ ...t, poolerUrl: undefined })
const pooled = (t: TenantRecord): TenantRecord => ({ ...t, poolerUrl: viaPgBouncer(t.dbUrl) })
const routes: Route[] = [
  { name: 'direct', pools: manager(false), through: direct },
  { name: 'unnamed', pools: manager(false), through: pooled },
  ...(keepsNamed ? [{ name: 'named', pools: manager(true), through: pooled }] : []),
]

// BENCH_ROWS projects per tenant, written directly.
const ids = new Map<string, string[]>()
for (const t of Object.values(world.tenants)) {
  const rows = await world.as(t, (db) =>
    db
      .insert(projects)
      .values(Array.from({ length: ROWS }, (_, i) => ({ name: `p${i}` })))
      .returning({ id: projects.id }),
  )
  ids.set(t.id, rows.map((r) => r.id))
}

/** Reads per second of CONCURRENCY loops reading by id for `seconds`; every read must find its row. */
async function reads(route: Route, tenant: TenantRecord, seconds: number): Promise<number> {
  const target = route.through(tenant)
  const mine = ids.get(tenant.id)!
  let done = 0
  const until = performance.now() + seconds * 1000
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, loop) => {
      for (let i = loop; performance.now() < until; i++) {
        const id = mine[i % mine.length]!
        const row = await route.pools.withTenant(target, (db) => createProjectsRepository(db).findById(id))
        if (row?.id !== id) throw new Error(`${route.name}: read ${id} of ${tenant.slug} and got ${row?.id}`)
        done++
      }
    }),
  )
  return done / seconds
}

try {
  const results = new Map<string, number[]>()
  const loads: string[] = []
  for (const tenant of Object.values(world.tenants)) for (const route of routes) await reads(route, tenant, 1) // warm: pools, statements, JIT
  for (let round = 0; round < ROUNDS; round++) {
    for (const tenant of Object.values(world.tenants))
      for (const route of routes) {
        const key = `${tenant.isolation}/${route.name}`
        results.set(key, [...(results.get(key) ?? []), await reads(route, tenant, SECONDS)])
      }
    loads.push(load())
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  console.log(`${version} on 127.0.0.1:${PGBOUNCER_PORT}, max_prepared_statements ${setting?.value ?? '(none: before 1.21)'}; ${CONCURRENCY} concurrent reads by id, ${ROUNDS} rounds × ${SECONDS} s, interleaved`)
  if (!keepsNamed) console.log('named: skipped (this PgBouncer does not keep named prepared statements across transactions)')
  console.log('tenant | route | reads/s (mean) | per round | ÷ direct')
  for (const tenant of Object.values(world.tenants))
    for (const route of routes) {
      const rs = results.get(`${tenant.isolation}/${route.name}`)!
      const base = mean(results.get(`${tenant.isolation}/direct`)!)
      console.log([tenant.isolation, route.name, mean(rs).toFixed(0), rs.map((r) => r.toFixed(0)).join(' / '), (mean(rs) / base).toFixed(2)].join(' | '))
    }
  console.log(`load average after each round: ${loads.join(' / ')}`)
} finally {
  await Promise.all(routes.map((r) => r.pools.close()))
  await world.close()
}
