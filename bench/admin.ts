/**
 * The platform admin API at scale, on a throwaway test world:
 *   1. bulk suspend: BENCH_BULK_TENANTS (default 1000) catalog rows, suspended by POST
 *      /admin/api/tenants/bulk-suspend with a filter; the job's progress is polled at /admin/api/jobs/:id.
 *      Checks every tenant is suspended with exactly one tenant.suspended audit entry naming the admin.
 *   2. audit export: BENCH_AUDIT_ROWS (default 1,000,000) audit entries, streamed by GET
 *      /admin/api/audit-logs?format=jsonl over real HTTP; the client discards the bytes while this
 *      process samples its heap and RSS (server and client share it), so a buffered export would show.
 *
 *   npx tsx bench/admin.ts
 *   node --expose-gc --import tsx bench/admin.ts    (also samples the live heap: after a forced GC every 500 ms)
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { eq, sql } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import { tenants, users } from '../drizzle/host/schema.js'
import { hashPassword } from '../src/core/identity/password.js'
import { startWorkers } from '../src/worker.js'
import setup from '../test/global-setup.js'
import { buildApp } from '../test/helpers/build-app.js'
import { createClient, PASSWORD } from '../test/helpers/client.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const BULK = Number(process.env.BENCH_BULK_TENANTS ?? 1000)
const AUDIT_ROWS = Number(process.env.BENCH_AUDIT_ROWS ?? 1_000_000)
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`

await setup()
const env = await createTestEnv({ LOG_LEVEL: 'silent' })
const app = await buildApp(env.config)
const worker = await startWorkers(app.services, { scopes: ['system'], concurrency: 2 })
try {
  const email = `bench-ops-${Date.now()}@example.com`
  const admin = await app.users.create({ email, name: 'ops', passwordHash: await hashPassword(PASSWORD) })
  await app.host.db.update(users).set({ isPlatformAdmin: true }).where(eq(users.id, admin.id))
  const c = createClient(app)
  if ((await c.login(email)).statusCode !== 200) throw new Error('login failed')

  // 1. Bulk suspend.
  const rows = Array.from({ length: BULK }, (_, i) => {
    const id = uuidv7()
    return { id, slug: `bulk-${i}`, name: `Bulk ${i}`, planTier: 'bench', status: 'active' as const, dbName: `bare_${i}`, dbUrlEncrypted: 'v1.x.x.x.x' }
  })
  for (let i = 0; i < rows.length; i += 1000) await app.host.db.insert(tenants).values(rows.slice(i, i + 1000))
  const started = performance.now()
  const submitted = await c.post('/admin/api/tenants/bulk-suspend', { filter: { planTier: 'bench' } })
  if (submitted.statusCode !== 202) throw new Error(`bulk-suspend: ${submitted.statusCode} ${submitted.body}`)
  const jobId = submitted.json().id
  const seen: string[] = []
  let job: { status: string; result: { done?: number; total?: number } | null }
  for (;;) {
    job = (await c.get(`/admin/api/jobs/${jobId}`)).json()
    const done = job.result?.done
    if (done !== undefined && seen.at(-1) !== `${done}/${job.result?.total}`) seen.push(`${done}/${job.result?.total}`)
    if (job.status === 'completed' || job.status === 'failed') break
    await new Promise((r) => setTimeout(r, 100))
  }
  const bulkS = (performance.now() - started) / 1000
  const [check] = await app.host.sql<{ suspended: number; audited: number; distinct_tenants: number }[]>`
    select (select count(*)::int from core_tenants where plan_tier = 'bench' and status = 'suspended') as suspended,
           (select count(*)::int from sys_audit_logs a join core_tenants t on t.id = a.tenant_id
              where t.plan_tier = 'bench' and a.action = 'tenant.suspended' and a.actor_user_id = ${admin.id}) as audited,
           (select count(distinct a.tenant_id)::int from sys_audit_logs a join core_tenants t on t.id = a.tenant_id
              where t.plan_tier = 'bench' and a.action = 'tenant.suspended') as distinct_tenants`
  console.log(`bulk suspend: ${BULK} tenants in ${bulkS.toFixed(1)} s (${(BULK / bulkS).toFixed(0)}/s), job ${job.status}`)
  console.log(`  progress seen: ${seen.join(' → ')}`)
  console.log(`  suspended ${check?.suspended}, tenant.suspended entries ${check?.audited} for ${check?.distinct_tenants} tenants`)

  // 2. Audit export.
  const tenantId = uuidv7()
  const fill = performance.now()
  await app.host.db.execute(sql`
    insert into sys_audit_logs (id, action, tenant_id, actor_user_id, ip, user_agent, metadata, created_at)
    select gen_random_uuid(), 'bench.entry', ${tenantId}::uuid, ${admin.id}::uuid, '10.0.0.1', 'bench/1.0',
           jsonb_build_object('i', g, 'note', 'a typical metadata object of some size'), now() - g * interval '1 millisecond'
    from generate_series(1, ${AUDIT_ROWS}) g`)
  console.log(`audit export: ${AUDIT_ROWS} rows inserted in ${((performance.now() - fill) / 1000).toFixed(1)} s`)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const cookie = Object.entries(c.cookies)
    .map(([k, v]) => `${k}=${v}`)
    .join('; ')
  global.gc?.()
  const base = process.memoryUsage()
  let peakRss = base.rss
  let peakHeap = base.heapUsed
  let peakLive = 0
  let ticks = 0
  const sampler = setInterval(() => {
    const m = process.memoryUsage()
    peakRss = Math.max(peakRss, m.rss)
    peakHeap = Math.max(peakHeap, m.heapUsed)
    // What is really held (garbage collected first): a buffered export would grow it with every row.
    if (global.gc && ++ticks % 10 === 0) {
      global.gc()
      peakLive = Math.max(peakLive, process.memoryUsage().heapUsed)
    }
  }, 50)
  const t0 = performance.now()
  const { bytes, lines, status } = await new Promise<{ bytes: number; lines: number; status: number }>((resolve, reject) => {
    http
      .get({ port, host: '127.0.0.1', path: `/admin/api/audit-logs?format=jsonl&tenantId=${tenantId}`, headers: { cookie } }, (res) => {
        let bytes = 0
        let lines = 0
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length
          for (const b of chunk) if (b === 10) lines++
        })
        res.on('end', () => resolve({ bytes, lines, status: res.statusCode ?? 0 }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
  clearInterval(sampler)
  const s = (performance.now() - t0) / 1000
  console.log(`  streamed ${lines} lines (${mb(bytes)}) in ${s.toFixed(1)} s, HTTP ${status}, ${(lines / s).toFixed(0)} rows/s`)
  if (global.gc) console.log(`  live heap (after GC, every 500 ms): ${mb(base.heapUsed)} before, peak ${mb(peakLive)} (+${mb(peakLive - base.heapUsed)})`)
  console.log(`  heap: ${mb(base.heapUsed)} before, peak ${mb(peakHeap)} (+${mb(peakHeap - base.heapUsed)}); RSS: ${mb(base.rss)} before, peak ${mb(peakRss)} (+${mb(peakRss - base.rss)})`)
} finally {
  await worker.close(5000)
  await app.close()
  await env.cleanup()
}
