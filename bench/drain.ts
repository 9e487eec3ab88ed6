/**
 * Drain rate: BENCH_TENANTS database tenants (default 20, each with BENCH_ROWS projects, default 200) and
 * BENCH_SHARED shared tenants (default 20, same rows) placed on the second cluster (127.0.0.1:55433,
 * .ci/second-postgres) as a shared server with its own shared database, then `servers drain` queues a
 * move for each and a worker (concurrency BENCH_CONCURRENCY, default 2) runs them. Prints the wall time
 * until every tenant is on the default server with its move done, tenants per minute, and each move's
 * write pause (p50/max).
 *
 *   npm run bench:drain
 *
 * Runs in an isolated world (like a test file) and drops every database it made at the end.
 */
import { eq, inArray } from 'drizzle-orm'
import { pino } from 'pino'
import { tenantMoves, tenants } from '../drizzle/host/schema.js'
import { drainServer } from '../src/core/tenancy/move/drain-server.js'
import { moveFigures } from '../src/core/tenancy/move/mover.js'
import { createServices } from '../src/services.js'
import { startWorkers } from '../src/worker.js'
import setup from '../test/global-setup.js'
import { dropOnSecondServer, ensureSecondServer, ensureSecondSharedRole, SECOND_APP_URL, secondSharedUrl } from '../test/helpers/second-server.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const DATABASE_TENANTS = Number(process.env.BENCH_TENANTS ?? 20)
const SHARED_TENANTS = Number(process.env.BENCH_SHARED ?? 20)
const ROWS = Number(process.env.BENCH_ROWS ?? 200)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 2)
const why = await ensureSecondServer()
if (why) throw new Error(why)
await ensureSecondSharedRole()
const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)

await setup()
const env = await createTestEnv({ SHARED_DATABASE_URL: 'auto', TENANT_ISOLATION: 'database' })
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)
const worker = await startWorkers(services, { scopes: ['system'], concurrency: CONCURRENCY })
try {
  const { provisioner } = services
  await provisioner.shared!.ensure()
  await provisioner.servers.add({ name: 'second', adminUrl: SECOND_APP_URL, role: 'shared', sharedUrl: secondSharedUrl(env.name) })
  await (await provisioner.servers.shared('second'))!.ensure()
  const ids: string[] = []
  const p0 = performance.now()
  for (let i = 0; i < DATABASE_TENANTS + SHARED_TENANTS; i++) {
    const isolation = i < DATABASE_TENANTS ? 'database' : 'shared'
    const t = await provisioner.provision({ slug: `drain-${isolation}-${i}`, name: `Drain ${i}`, isolation, server: 'second' })
    await services.pools.withTenant((await services.catalog.get(t.id))!, (db) =>
      db.$client.unsafe(
        `insert into projects (id, name, description, status, created_by)
         select gen_random_uuid(), 'project ' || g, repeat('lorem ipsum ', 4), 'active', gen_random_uuid() from generate_series(1, ${ROWS}) g`,
      ),
    )
    ids.push(t.id)
  }
  line('tenants on the second server', `${DATABASE_TENANTS} database + ${SHARED_TENANTS} shared, ${ROWS} rows each (set up in ${Math.round(performance.now() - p0)} ms)`)

  const d0 = performance.now()
  const result = await drainServer({ host: services.host, provisioner, mover: services.mover }, 'second')
  const queuedMs = performance.now() - d0
  if (result.skipped.length) throw new Error(`not queued: ${JSON.stringify(result.skipped)}`)
  for (;;) {
    const left = await services.host.db.select({ id: tenantMoves.id }).from(tenantMoves).where(eq(tenantMoves.state, 'running'))
    if (left.length === 0) break
    await new Promise((r) => setTimeout(r, 100))
  }
  const ms = performance.now() - d0
  const onSecond = await services.host.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.server, 'second'))
  const moves = await services.host.db.select().from(tenantMoves).where(inArray(tenantMoves.tenantId, ids))
  const failed = moves.filter((m) => m.state !== 'done')
  const pauses = moves.map((m) => moveFigures(m).writePauseMs ?? 0).sort((a, b) => a - b)
  const n = ids.length
  line('moves queued', `${result.moved.length} in ${Math.round(queuedMs)} ms`)
  line('drained', `${n} tenants in ${(ms / 1000).toFixed(1)} s: ${((n / ms) * 60_000).toFixed(1)} tenants/min (worker concurrency ${CONCURRENCY})`)
  line('write pause per tenant', `p50 ${pauses[Math.floor(pauses.length / 2)]} ms, max ${pauses.at(-1)} ms`)
  line('left on the second server', onSecond.length)
  line('moves not done', failed.length)
} finally {
  await worker.close(5000)
  await services.close()
  await dropOnSecondServer(env.name)
  await env.cleanup()
}
