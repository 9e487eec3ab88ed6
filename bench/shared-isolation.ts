/**
 * Shared isolation (issue 14): what row-level security with a per-statement tenant transaction costs.
 *
 * In one run, on one shared database seeded with BENCH_TENANTS shared tenants × BENCH_ROWS projects,
 * BENCH_CONCURRENCY loops read one project by id through pools of the same size (SHARED_POOL_MAX):
 *   plain      SELECT … FROM projects WHERE tenant_id = $1 AND id = $2 (a role that bypasses RLS; one round trip)
 *   pipelined  the shared tenant's handle (scoped client): begin + set_config, the SELECT, commit written
 *              as one batch (one round trip) on a statement lane, several units back to back per lane
 *              (as the pool manager builds it), RLS adding the tenant filter
 *   reserving  the same unit, but reserving a connection per unit (one unit per connection at a time)
 *   naive      sql.begin(tx => { set_config; SELECT }): begin, set_config, SELECT, commit one after another
 *   drizzle    the shared tenant's TenantDb: db.select().from(projects).where(eq(id)) (unprepared, as routes write it)
 * Rounds are interleaved (BENCH_ROUNDS × BENCH_SECONDS each) so every mode sees the same machine; the
 * ratios to plain are printed with the load average. Goal: pipelined ≥ 0.5× plain (the naive way: 0.23–0.30×).
 * First, shared tenant provisioning (catalog row + owner membership + audit, the owner seeded in the shared
 * tables, the welcome email job, active): p50/p99 over the tenants above, one after another. Goal: p50 < 10 ms.
 *   BENCH_BASELINE_REF=<commit>  also provisions through the kit as of that commit (a temporary git worktree
 *   whose services are imported into this process, on the same test world), one tenant each in turn, so
 *   before and after are measured in the same run.
 *
 *   npm run bench:shared     (BENCH_TENANTS 200, BENCH_ROWS 20, BENCH_CONCURRENCY 32, BENCH_SECONDS 5, BENCH_ROUNDS 3)
 *
 * Provisioning measured 2026-12-03 (2 cores shared with other helpers; 200 tenants each, interleaved, before = the
 * commit before the cuts):
 *   load average 3.7–4.4, BENCH_BASELINE_REF=fc03c2b: p50 28.0 ms, p99 48.6 ms; before 34.7 / 65.5 ms (p50 0.81×)
 *   load average 8.3–10.5, BENCH_BASELINE_REF=main (then): p50 32.5 / p99 152 ms; before 38.7 / 148 ms (p50 0.84×)
 * What was left then was not drizzle's CPU but its unprepared statements: postgres.js sends a statement with
 * parameters and no prepared form as Parse/Describe, waits for the answer, then Bind/Execute, so each drizzle
 * statement cost two round trips and held its connection's pipeline. Now (one host round trip p50 0.03 ms, p99 4.3
 * ms at that load: the time goes to waiting for a CPU, once per round trip) the chain is five waits: the registering
 * transaction written at once (begin, slug/quota locks, one statement inserting row + membership + audit and
 * returning row and owner, commit) with the tenant lock taken alongside; the owner seeded in the shared database
 * beside the welcome email's record + BullMQ add (a concurrent step); the activating update and the audit entry in
 * one pipelined transaction; the invalidation beside the unlock. BENCH_BASELINE_REF=d021553 (main before these cuts):
 *   load average 2.8–2.9: p50 5.8 ms, p99 22.1 ms; before 11.4 / 35.2 ms (p50 0.51×). Goal met.
 *   load average 7.5–8.5 (the unlock still after the invalidation): p50 13.9 ms, p99 69.0 ms; before 26.0 / 140.7 (0.54×).
 *   In-process A/B at load 11.6: the email beside seedOwner 16.2 vs 19.5 ms. At load ~8 each wait costs ~2 ms.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { users } from '../drizzle/host/schema.js'
import { projects } from '../drizzle/tenant/schema.js'
import { connect, withDatabase } from '../src/core/db/connect.js'
import { createScopedClient, createUnitLanes, laneCount, setTenantSql } from '../src/core/tenancy/shared/scoped-client.js'
import type { TenantRecord } from '../src/core/tenancy/types.js'
import { createServices } from '../src/services.js'
import setup from '../test/global-setup.js'
import { ADMIN_URL, SHARED } from '../test/helpers/env.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 200)
const ROWS = Number(process.env.BENCH_ROWS ?? 20)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const BASELINE_REF = process.env.BENCH_BASELINE_REF
const root = fileURLToPath(new URL('..', import.meta.url))

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN
}
const ms = (x: number) => `${x.toFixed(x < 1 ? 2 : 1)} ms`
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')

await setup()
const env = await createTestEnv({ ...SHARED })
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)
const poolMax = env.config.pool.sharedMax
const sharedDb = `${env.name}_shared`
// The kit as of BENCH_BASELINE_REF: its own services (its own code), on this same world.
let baselineTree: string | undefined
let baseline: ReturnType<typeof createServices> | undefined
if (BASELINE_REF) {
  baselineTree = mkdtempSync(join(tmpdir(), 'shared-baseline-'))
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', baselineTree, BASELINE_REF], { stdio: 'ignore' })
  symlinkSync(join(root, 'node_modules'), join(baselineTree, 'node_modules'))
  const then = (await import(pathToFileURL(join(baselineTree, 'src/services.ts')).href)) as { createServices: typeof createServices }
  baseline = then.createServices(env.config, logger)
}
try {
  line('load average at start', load())
  const [owner] = await services.host.db.insert(users).values({ email: `bench-${env.name}@example.com`, name: 'Bench' }).returning()

  // Provisioning: the first one also creates, migrates and sharedifies the shared database.
  const provisionMs: number[] = []
  const baselineMs: number[] = []
  const tenants: TenantRecord[] = []
  for (let i = 0; i < TENANTS; i++) {
    const t0 = performance.now()
    const t = await services.provisioner.provision({ slug: `bench-${i}`, name: `Bench ${i}`, ownerUserId: owner!.id, isolation: 'shared' })
    const took = performance.now() - t0
    if (i === 0) line('first shared tenant (creates + migrates + sharedifies the shared database)', ms(took))
    else provisionMs.push(took)
    tenants.push((await services.catalog.get(t.id))!)
    if (baseline) {
      const b0 = performance.now()
      await baseline.provisioner.provision({ slug: `before-${i}`, name: `Before ${i}`, ownerUserId: owner!.id, isolation: 'shared' })
      if (i > 0) baselineMs.push(performance.now() - b0)
    }
  }
  line(`shared tenant provisioning, ${provisionMs.length} tenants one after another`, `p50 ${ms(pct(provisionMs, 50))}, p99 ${ms(pct(provisionMs, 99))}`)
  if (baseline) {
    line(`shared tenant provisioning @${BASELINE_REF}, interleaved`, `p50 ${ms(pct(baselineMs, 50))}, p99 ${ms(pct(baselineMs, 99))}`)
    line('p50 now / before', (pct(provisionMs, 50) / pct(baselineMs, 50)).toFixed(2))
    await baseline.close()
    baseline = undefined
  }
  // What one round trip costs on this machine right now: provisioning is a chain of them.
  const rtt: number[] = []
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now()
    await services.host.sql`select 1`
    rtt.push(performance.now() - t0)
  }
  line('one host round trip (select 1), 200 one after another', `p50 ${ms(pct(rtt, 50))}, p99 ${ms(pct(rtt, 99))}`)
  line('load average after provisioning', load())

  // Seed: ROWS projects per tenant, through each tenant's handle (tenant_id stamped by the database).
  const ids: string[][] = []
  for (const t of tenants) {
    const rows = Array.from({ length: ROWS }, (_, i) => ({ id: crypto.randomUUID(), name: `p${i}` }))
    await services.pools.withTenant(t, (db) => db.insert(projects).values(rows))
    ids.push(rows.map((r) => r.id))
  }
  await services.pools.withTenant(tenants[0]!, (db) => db.$client`analyze projects`.catch(() => undefined))

  // Same pool size for every mode. plain bypasses RLS (superuser): the single-database baseline.
  const plainSql = connect(withDatabase(ADMIN_URL, sharedDb), { max: poolMax })
  const dataSql = connect(env.config.sharedDatabaseUrl!, { max: poolMax })
  // As the pool manager builds them: statement lanes on half the connections.
  const lanes = createUnitLanes(dataSql, laneCount(poolMax))
  const scoped = tenants.map((t) => createScopedClient(dataSql, t.id, lanes))
  const unlaned = tenants.map((t) => createScopedClient(dataSql, t.id))
  const handles = await Promise.all(tenants.map((t) => services.pools.acquire(t)))
  const pick = () => {
    const t = Math.floor(Math.random() * tenants.length)
    return { t, id: ids[t]![Math.floor(Math.random() * ROWS)]! }
  }
  const modes: Record<string, () => Promise<unknown>> = {
    plain: () => {
      const { t, id } = pick()
      return plainSql`select id, name, status from projects where tenant_id = ${tenants[t]!.id} and id = ${id}`
    },
    pipelined: () => {
      const { t, id } = pick()
      return scoped[t]!`select id, name, status from projects where id = ${id}`
    },
    reserving: () => {
      const { t, id } = pick()
      return unlaned[t]!`select id, name, status from projects where id = ${id}`
    },
    naive: () => {
      const { t, id } = pick()
      return dataSql.begin(async (tx) => {
        await tx.unsafe(setTenantSql(tenants[t]!.id))
        return tx`select id, name, status from projects where id = ${id}`
      })
    },
    drizzle: () => {
      const { t, id } = pick()
      return handles[t]!.db.select({ id: projects.id, name: projects.name, status: projects.status }).from(projects).where(eq(projects.id, id))
    },
  }
  // Every mode must find its row: a wrong answer would make a fast number meaningless.
  for (const [name, run] of Object.entries(modes)) {
    const rows = (await run()) as unknown[]
    if (rows.length !== 1) throw new Error(`${name}: expected 1 row, got ${rows.length}`)
  }

  async function round(run: () => Promise<unknown>): Promise<number> {
    const until = performance.now() + SECONDS * 1000
    let n = 0
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < until) {
          await run()
          n++
        }
      }),
    )
    return n
  }
  const totals: Record<string, number> = Object.fromEntries(Object.keys(modes).map((m) => [m, 0]))
  for (const run of Object.values(modes)) await round(run) // warm up (prepared statements, connections)
  for (let r = 0; r < ROUNDS; r++) for (const [name, run] of Object.entries(modes)) totals[name]! += await round(run)
  const perSecond = (name: string) => totals[name]! / (ROUNDS * SECONDS)
  line('setup', `${TENANTS} shared tenants × ${ROWS} projects, pools of ${poolMax}, ${CONCURRENCY} concurrent loops, ${ROUNDS} × ${SECONDS} s per mode, interleaved`)
  for (const name of Object.keys(modes)) {
    line(`${name.padEnd(9)} reads/s`, `${Math.round(perSecond(name))} (${(perSecond(name) / perSecond('plain')).toFixed(2)}× plain)`)
  }
  line('load average at end', load())

  for (const h of handles) h.release()
  lanes.close()
  await Promise.all([plainSql.end(), dataSql.end()])
} finally {
  await baseline?.close()
  await services.close()
  await env.cleanup()
  if (baselineTree) {
    rmSync(join(baselineTree, 'node_modules'))
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', baselineTree], { stdio: 'ignore' })
  }
}
