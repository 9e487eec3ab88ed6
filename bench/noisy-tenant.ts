/**
 * A noisy neighbour (issue 13, per-tenant rate limits): tenant B's latency alone, then while tenant A
 * floods past its plan's requests per minute (and gets 429s). Both read one project through the full
 * request plane with a session; B's plan has room to spare, A's allows NOISY_RPM (default 600).
 *
 *   npx tsx bench/noisy-tenant.ts     (BENCH_DURATION_S per phase, default 10; BENCH_ROUNDS, default 2)
 *
 * Prints B's req/s, p50 and p99 solo and under the flood, their ratio (goal: p50 within 20 %), and A's 2xx / 429 counts.
 *
 * Measured 2026-12-02 on the shared 2-core dev machine (client and server on the same cores), 2 × 10 s:
 * B solo 2064 req/s, p50 2.5 ms, p99 22.5 ms; while A floods with 50 connections, 557 req/s, p50 16.0 ms,
 * p99 54.5 ms (×6.4); A got 599 answers (its 600/min) and 74,072 429s. The limit keeps A off the
 * database, but each 429 still costs the tenant guard's work (session, membership, catalog, pool lease,
 * role) plus a Redis INCR, about a quarter of a served read, in the process B shares: the limit decides
 * who is served, it does not isolate CPU. Isolation needs the flood refused before the process (a
 * balancer's per-key limit) or more cores than the client and server share here.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'
import { type AutocannonOptions, type AutocannonResult, runAutocannon } from './lib/autocannon.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const QUIET_CONNECTIONS = Number(process.env.BENCH_QUIET_CONNECTIONS ?? 10)
const NOISY_CONNECTIONS = Number(process.env.BENCH_NOISY_CONNECTIONS ?? 50)

await setup()
const env = await createTestEnv({ LOG_LEVEL: 'silent', POOL_MAX_PER_TENANT: '10', RATE_LIMIT_MAX: '100000000' })
const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./lib/noisy-tenant-server.ts', import.meta.url))], {
  env: { ...process.env, ...env.vars },
  stdio: ['ignore', 'pipe', 'inherit'],
})
type Tenant = { cookie: string; projectId: string }
try {
  const info = await new Promise<{ port: number; a: Tenant; b: Tenant }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)))
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
  })
  const run = (t: Tenant, connections: number, duration = DURATION_S) =>
    runAutocannon({
      url: `http://127.0.0.1:${info.port}/api/projects/${t.projectId}`,
      connections,
      duration,
      headers: { cookie: t.cookie },
    } as AutocannonOptions & { headers: Record<string, string> }) as Promise<AutocannonResult & { statusCodeStats?: Record<string, { count: number }> }>

  await run(info.b, QUIET_CONNECTIONS, 3) // warm up (JIT, pools, prepared statements)
  const solo: AutocannonResult[] = []
  const flooded: AutocannonResult[] = []
  let noisy2xx = 0
  let noisy429 = 0
  for (let round = 0; round < ROUNDS; round++) {
    solo.push(await run(info.b, QUIET_CONNECTIONS))
    const [quiet, noisy] = await Promise.all([run(info.b, QUIET_CONNECTIONS), run(info.a, NOISY_CONNECTIONS)])
    flooded.push(quiet)
    noisy2xx += noisy['2xx']
    noisy429 += noisy.statusCodeStats?.['429']?.count ?? 0
  }
  const mean = (rs: AutocannonResult[], f: (r: AutocannonResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length
  const p50 = (rs: AutocannonResult[]) => mean(rs, (r) => r.latency.p50)
  const line = (name: string, rs: AutocannonResult[]) =>
    console.log(`B ${name}: ${mean(rs, (r) => r.requests.average).toFixed(0)} req/s, p50 ${p50(rs).toFixed(1)} ms, p99 ${mean(rs, (r) => r.latency.p99).toFixed(1)} ms, non-2xx ${rs.reduce((s, r) => s + r.non2xx, 0)}`)
  line('solo', solo)
  line('while A floods', flooded)
  console.log(`B p50 under flood / solo: ${(p50(flooded) / p50(solo)).toFixed(2)} (goal ≤ 1.20)`)
  console.log(`A (flooding, ${NOISY_CONNECTIONS} connections): ${noisy2xx} served, ${noisy429} refused with 429`)
} finally {
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  await env.cleanup()
}
