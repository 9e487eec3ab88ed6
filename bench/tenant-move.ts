/**
 * A mode move of a tenant with BENCH_ROWS rows (default 100,000: 80 % projects, 20 % job records), database
 * → shared, then shared → database, while a writer and a reader hit the tenant all along (as requests do:
 * catalog lookup, then the tenant's handle; a write while the catalog says moving counts as refused, as the
 * guard answers it, and so does one the read-only handle refuses). Per move: the write pause (as recorded,
 * and as the writer saw it: first refused write → first accepted one after), the total time, each step's
 * time, failed reads (goal 0) and rows lost (goal 0). Baseline in the same run: one plain read of every row.
 *
 *   npm run bench:move              (BENCH_ROWS)
 *   BENCH_MOVE=server npm run bench:move   database → database on the second cluster (127.0.0.1:55433,
 *                                          .ci/second-postgres) and back: server moves instead of mode moves
 *
 * Runs in an isolated world (host database, tenant prefix and Redis prefix of its own, like a test file)
 * and drops every database it made at the end.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { count } from 'drizzle-orm'
import { pino } from 'pino'
import { users } from '../drizzle/host/schema.js'
import { projects } from '../drizzle/tenant/schema.js'
import { pgCode } from '../src/core/lib/errors.js'
import { createTenantMover } from '../src/core/tenancy/move/index.js'
import { moveFigures, type RunnableStep } from '../src/core/tenancy/move/mover.js'
import { createServices } from '../src/services.js'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'
import { dropOnSecondServer, ensureSecondServer, SECOND_APP_URL } from '../test/helpers/second-server.js'

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000)
const SERVER_MOVES = process.env.BENCH_MOVE === 'server'
if (SERVER_MOVES) {
  const why = await ensureSecondServer()
  if (why) throw new Error(why)
}
const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)

await setup()
const env = await createTestEnv({ SHARED_DATABASE_URL: 'auto', TENANT_ISOLATION: 'database' })
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)
const t0 = performance.now()
try {
  const [owner] = await services.host.db
    .insert(users)
    .values({ email: `bench-${env.name}@example.com`, name: 'Bench' })
    .returning()
  const tenant = await services.provisioner.provision({
    slug: 'bench-move',
    name: 'Bench move',
    ownerUserId: owner!.id,
    isolation: 'database',
  })
  await services.provisioner.shared!.ensure()
  if (SERVER_MOVES) await services.provisioner.servers.add({ name: 'second', adminUrl: SECOND_APP_URL, role: 'dedicated' })
  const record = async () => (await services.catalog.get(tenant.id))!
  const projectRows = Math.round(ROWS * 0.8)
  await services.pools.withTenant(await record(), async (db) => {
    await db.$client.unsafe(
      `insert into projects (id, name, description, status, created_by)
       select gen_random_uuid(), 'project ' || g, repeat('lorem ipsum ', 4), case when g % 5 = 0 then 'archived' else 'active' end, gen_random_uuid()
       from generate_series(1, ${projectRows}) g`,
    )
    await db.$client.unsafe(
      `insert into tenant_jobs (id, job_type, status, payload, result, retry_count)
       select gen_random_uuid(), 'bench.job', 'completed', jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b')), jsonb_build_object('ok', true), g % 3
       from generate_series(1, ${ROWS - projectRows}) g`,
    )
  })
  line('rows in the tenant', ROWS)

  // Baseline: one plain read of every row of the tenant (what any copy must at least do).
  const b0 = performance.now()
  await services.pools.withTenant(await record(), async (db) => {
    for (const t of [
      'core_tenant_users',
      'core_permissions',
      'core_settings',
      'tenant_jobs',
      'projects',
      'webhook_endpoints',
      'webhook_deliveries',
    ])
      await db.$client.unsafe(`select * from ${t}`)
  })
  const baselineMs = performance.now() - b0
  line('baseline: read every row once', `${baselineMs.toFixed(0)} ms`)

  const stepMs: Partial<Record<RunnableStep, number>> = {}
  const started = new Map<RunnableStep, number>()
  const mover = createTenantMover({
    config: services.config,
    host: services.host,
    catalog: services.catalog,
    pools: services.pools,
    provisioner: services.provisioner,
    tasks: services.tasks,
    logger,
    faults: {
      beforeStep: (s) => {
        started.set(s, performance.now())
      },
      afterStep: (s) => {
        stepMs[s] = performance.now() - started.get(s)!
      },
    },
  })

  let written = 0
  const targets = SERVER_MOVES
    ? ([
        { isolation: 'database', server: 'second' },
        { isolation: 'database', server: 'default' },
      ] as const)
    : ([{ isolation: 'shared' }, { isolation: 'database' }] as const)
  for (const target of targets) {
    for (const k of Object.keys(stepMs)) delete stepMs[k as RunnableStep]
    let running = true
    const w = { ok: 0, refused: 0, failed: 0, firstRefused: 0, lastRefused: 0, resumedAt: 0 }
    const r = { ok: 0, failed: 0 }
    const refused = () => {
      const now = performance.now()
      w.refused++
      w.firstRefused ||= now
      w.lastRefused = now
    }
    const writer = (async () => {
      while (running) {
        const rec = await record()
        if (rec.moving) refused()
        else {
          try {
            await services.pools.withTenant(rec, (db) => db.insert(projects).values({ name: 'written during the move' }))
            w.ok++
            if (w.firstRefused && !w.resumedAt) w.resumedAt = performance.now()
          } catch (err) {
            if (pgCode(err) === '25006') refused()
            else w.failed++
          }
        }
        await sleep(5)
      }
    })()
    const reader = (async () => {
      while (running) {
        try {
          await services.pools.withTenant(await record(), (db) => db.select({ n: count() }).from(projects))
          r.ok++
        } catch {
          r.failed++
        }
        await sleep(5)
      }
    })()
    await sleep(200)
    const before = w.ok
    const move = await mover.moveTenant(tenant.id, { target })
    await sleep(200)
    running = false
    await Promise.all([writer, reader])
    const f = moveFigures(move)
    const [{ n } = { n: 0 }] = await services.pools.withTenant(await record(), (db) => db.select({ n: count() }).from(projects))
    written += w.ok
    const expected = projectRows + written
    const label = SERVER_MOVES ? `${move.fromServer} → ${move.toServer}` : `${move.fromIsolation} → ${move.toIsolation}`
    line(`${label}: rows copied and verified`, f.rows)
    line(`${label}: write pause (recorded, mark → switch)`, `${f.writePauseMs} ms`)
    line(`${label}: write pause seen by the writer (first refused → first accepted)`, `${(w.resumedAt - w.firstRefused).toFixed(0)} ms`)
    line(`${label}: write pause ÷ baseline read`, `${((f.writePauseMs ?? 0) / baselineMs).toFixed(2)}×`)
    line(`${label}: total`, `${f.totalMs} ms`)
    line(
      `${label}: steps`,
      Object.entries(stepMs)
        .map(([s, ms]) => `${s} ${ms!.toFixed(0)} ms`)
        .join(', '),
    )
    line(
      `${label}: writes accepted / refused (503 TENANT_MOVING) / failed`,
      `${w.ok} (${before} before the move) / ${w.refused} / ${w.failed}`,
    )
    line(`${label}: reads ok / failed`, `${r.ok} / ${r.failed}`)
    line(`${label}: projects lost`, expected - n)
  }
  await mover.close()
} finally {
  await services.close()
  await env.cleanup()
  if (SERVER_MOVES) await dropOnSecondServer(env.name)
  line('wall time', `${((performance.now() - t0) / 1000).toFixed(1)} s`)
}
