/**
 * Fleet migrations over BENCH_TENANTS tenants (default 200), provisioned through the real provisioner:
 *   1. nothing pending: migrateFleet reads the catalog and skips every tenant without connecting;
 *      baseline in the same run: what a loop without catalog versions does, connecting to every tenant
 *      and running the (no-op) migrator, at the same concurrency;
 *   2. one new migration (a temporary copy of migrations/tenant plus one ALTER TABLE): every tenant
 *      database is migrated and its version recorded.
 *
 *   npx tsx bench/fleet-migrate.ts        (BENCH_TENANTS, default 200; BENCH_CONCURRENCY, default 4)
 *
 * Runs in an isolated world like a test file and drops every database it made at the end.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { tenants } from '../drizzle/host/schema.js'
import { decrypt } from '../src/core/lib/crypto.js'
import { MIGRATIONS, runMigrations } from '../src/core/db/migrations.js'
import { createServices } from '../src/services.js'
import { type FleetDeps, listBehind, migrateFleet } from '../src/core/tenancy/fleet.js'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 200)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4)

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const secs = (ms: number) => (ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`)
const rate = (n: number, ms: number) => `${(n / (ms / 1000)).toFixed(1)} tenants/s`

async function migrationsWithExtra(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tk-bench-migrations-'))
  await cp(MIGRATIONS.tenant, dir, { recursive: true })
  const journalPath = join(dir, 'meta/_journal.json')
  const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: { idx: number; when: number; tag: string }[] }
  const last = journal.entries.at(-1)!
  const tag = `${String(last.idx + 1).padStart(4, '0')}_bench_add_project_code`
  journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag })
  await writeFile(journalPath, JSON.stringify(journal, null, 2))
  await writeFile(
    join(dir, `${tag}.sql`),
    'ALTER TABLE "projects" ADD COLUMN "code" text;\nCREATE INDEX "projects_code_idx" ON "projects" ("code");\n',
  )
  return dir
}

await setup()
const env = await createTestEnv()
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)
let folder: string | undefined
try {
  let t0 = performance.now()
  for (let i = 0; i < TENANTS; i++) await services.provisioner.provision({ slug: `fleet-${i}`, name: `Fleet ${i}` })
  line('tenants provisioned', `${TENANTS} in ${secs(performance.now() - t0)}`)
  // The benchmark's own pools would otherwise count as open connections; a CLI run starts with none.
  for (const t of await services.host.db.select({ id: tenants.id }).from(tenants)) await services.pools.evict(t.id)

  const deps: FleetDeps = { host: services.host, catalog: services.catalog, config: env.config, logger }

  t0 = performance.now()
  const behind = await listBehind(deps)
  line('listBehind (one query), nothing pending', `${behind.length} behind in ${(performance.now() - t0).toFixed(1)} ms`)

  t0 = performance.now()
  const idle = await migrateFleet(deps, { concurrency: CONCURRENCY })
  const idleMs = performance.now() - t0
  line('fleet migrate, nothing pending', `${secs(idleMs)} (${idle.skipped} skipped, ${rate(TENANTS, idleMs)})`)

  // Baseline: connect to every tenant and run the migrator, which finds nothing to do.
  const rows = await services.host.db.select().from(tenants)
  t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < rows.length) await runMigrations(decrypt(rows[next++]!.dbUrlEncrypted, env.config.encryptionKeys), MIGRATIONS.tenant)
    }),
  )
  const naiveMs = performance.now() - t0
  line('baseline: connect + no-op migrate every tenant', `${secs(naiveMs)} (${rate(TENANTS, naiveMs)})`)
  line('ratio baseline / fleet migrate (nothing pending)', `${(naiveMs / idleMs).toFixed(0)}x`)

  folder = await migrationsWithExtra()
  t0 = performance.now()
  const pending = await listBehind({ ...deps, folder })
  line('listBehind after a new migration', `${pending.length} behind in ${(performance.now() - t0).toFixed(1)} ms`)

  t0 = performance.now()
  const run = await migrateFleet({ ...deps, folder }, { concurrency: CONCURRENCY })
  const runMs = performance.now() - t0
  line(
    `fleet migrate, one new migration (concurrency ${CONCURRENCY})`,
    `${secs(runMs)} (${run.migrated} migrated, ${run.failed} failed, ${rate(TENANTS, runMs)})`,
  )
  const perTenant = run.results.map((r) => r.ms).sort((a, b) => a - b)
  line('  per-tenant migration p50', `${perTenant[Math.floor(perTenant.length / 2)]} ms`)
  line('ratio one-new-migration / nothing-pending time', `${(runMs / idleMs).toFixed(0)}x`)

  t0 = performance.now()
  const after = await migrateFleet({ ...deps, folder }, { concurrency: CONCURRENCY })
  line('fleet migrate again, nothing pending', `${secs(performance.now() - t0)} (${after.skipped} skipped)`)
} finally {
  await services.close()
  if (folder) await rm(folder, { recursive: true, force: true })
  const t0 = performance.now()
  await env.cleanup()
  line('cleanup (drop every database made)', secs(performance.now() - t0))
}
