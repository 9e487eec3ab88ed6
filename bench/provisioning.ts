/**
 * Provisioning latency: the full provisioner (catalog row + owner membership in one transaction →
 * CREATE DATABASE … TEMPLATE → migrate (a no-op on a fresh clone) → seed the owner's tenant user and
 * settings → active, with the audit log and cache invalidations) over BENCH_TENANTS tenants, one after
 * another, against a baseline measured in the same run (interleaved): plain CREATE DATABASE + running
 * the tenant migrations, for BENCH_BASELINE tenants. Goal: p50 < 60 ms, p99 < 200 ms.
 *
 *   npx tsx bench/provisioning.ts          (BENCH_TENANTS, default 50; BENCH_BASELINE, default 5)
 *
 * Runs in an isolated world (host database, tenant prefix and Redis prefix of its own, like a test
 * file) and drops every database it made at the end.
 */
import { pino } from 'pino'
import { users } from '../drizzle/host/schema.js'
import { connect, quoteIdent, withDatabase } from '../src/core/db/connect.js'
import { MIGRATIONS, runMigrations } from '../src/core/db/migrations.js'
import { createServices } from '../src/services.js'
import type { StepName } from '../src/core/tenancy/lifecycle.js'
import { createProvisioner } from '../src/core/tenancy/provisioning.js'
import { maintenanceUrl, tenantServerUrl } from '../src/core/tenancy/template.js'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const TENANTS = Number(process.env.BENCH_TENANTS ?? 50)
const BASELINE = Number(process.env.BENCH_BASELINE ?? 5)

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN
}
const ms = (x: number) => `${x.toFixed(1)} ms`

await setup()
const env = await createTestEnv()
const logger = pino({ level: 'silent' })
const services = createServices(env.config, logger)
const admin = connect(maintenanceUrl(env.config), { max: 1 })
let t0 = performance.now()
try {
  // Per-step timings through the provisioner's hooks (they only record, never throw).
  const stepStart = new Map<string, number>()
  const stepMs: Record<string, number[]> = {}
  const provisioner = createProvisioner({
    host: services.host,
    catalog: services.catalog,
    tasks: services.tasks,
    lifecycle: services.lifecycle,
    pools: services.pools,
    config: env.config,
    logger,
    faults: {
      beforeStep: (step: StepName, id) => {
        stepStart.set(`${id}:${step}`, performance.now())
      },
      afterStep: (step: StepName, id) => {
        const t0 = stepStart.get(`${id}:${step}`)
        if (t0 === undefined) return
        stepMs[step] ??= []
        stepMs[step].push(performance.now() - t0)
      },
    },
  })

  t0 = performance.now()
  await provisioner.template.ensure()
  line('template build (once per migration hash)', ms(performance.now() - t0))

  // Baseline: what provisioning costs without a template. Interleaved with the measured runs so both
  // see the same machine (a shared box's load changes by the minute).
  const baseline: number[] = []
  const baselineEvery = Math.max(1, Math.floor(TENANTS / BASELINE))
  const runBaseline = async () => {
    const db = `${env.name}_baseline_${baseline.length}`
    const b0 = performance.now()
    await admin.unsafe(`create database ${quoteIdent(db)}`)
    await runMigrations(withDatabase(tenantServerUrl(env.config), db), MIGRATIONS.tenant)
    baseline.push(performance.now() - b0)
  }

  const owners = await services.host.db
    .insert(users)
    .values(Array.from({ length: TENANTS }, (_, i) => ({ email: `bench-owner-${i}@example.com`, name: `Owner ${i}` })))
    .returning({ id: users.id })
  // Two warm-up tenants (JIT, prepared statements, first pool) are not counted.
  for (let i = 0; i < 2; i++) await provisioner.provision({ slug: `warm-${i}`, name: `Warm ${i}` })
  for (const key of Object.keys(stepMs)) stepMs[key] = []

  const latencies: number[] = []
  let provisioningS = 0
  for (let i = 0; i < TENANTS; i++) {
    if (i % baselineEvery === 0 && baseline.length < BASELINE) await runBaseline()
    t0 = performance.now()
    const t = await provisioner.provision({ slug: `bench-${i}`, name: `Bench ${i}`, ownerUserId: owners[i]!.id })
    latencies.push(performance.now() - t0)
    provisioningS += (performance.now() - t0) / 1000
    if (t.status !== 'active') throw new Error(`tenant bench-${i} ended ${t.status}`)
  }
  await provisioner.close()

  line('tenants provisioned', TENANTS)
  line('provision p50', ms(pct(latencies, 50)))
  line('provision p90', ms(pct(latencies, 90)))
  line('provision p99', ms(pct(latencies, 99)))
  line('provision max', ms(Math.max(...latencies)))
  line('provision throughput (sequential)', `${(TENANTS / provisioningS).toFixed(1)} tenants/s`)
  for (const [step, xs] of Object.entries(stepMs)) line(`  step ${step} p50`, ms(pct(xs, 50)))
  line(`baseline create + migrate p50 (${BASELINE} tenants)`, ms(pct(baseline, 50)))
  line('baseline create + migrate max', ms(Math.max(...baseline)))
  line('ratio baseline p50 / provision p50', `${(pct(baseline, 50) / pct(latencies, 50)).toFixed(2)}x`)
  line('goal p50 < 60 ms', pct(latencies, 50) < 60 ? 'met' : 'missed')
  line('goal p99 < 200 ms', pct(latencies, 99) < 200 ? 'met' : 'missed')
} finally {
  await admin.end()
  await services.close()
  t0 = performance.now()
  await env.cleanup()
  line('cleanup (drop every database made)', `${((performance.now() - t0) / 1000).toFixed(1)} s`)
}
