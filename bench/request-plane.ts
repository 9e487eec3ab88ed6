/**
 * The request plane's overhead: an authenticated `GET /api/projects/:id` (session in Redis → user →
 * membership → catalog → tenant pool → role → SELECT) against a bare Fastify + postgres.js route doing
 * the same SELECT on the same database, measured alternately in one run. The same route with an API
 * key (no session round trip to Redis) is measured too, to show what the session costs.
 *
 *   npx tsx bench/request-plane.ts        (BENCH_DURATION_S per round, default 15; BENCH_ROUNDS, default 2)
 *   BENCH_CPU_PROF=/tmp/prof npx tsx bench/request-plane.ts   (writes the server's .cpuprofile there on exit)
 *
 * Prints req/s and p99 for both, and the ratio (goal ≥ 0.85). Also the server's CPU time per request
 * (Linux /proc), which other load on a shared machine disturbs far less than req/s does.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'
import { type AutocannonOptions, type AutocannonResult, runAutocannon } from './lib/autocannon.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 15)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const CPU_PROF = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []

await setup()
const env = await createTestEnv({ LOG_LEVEL: 'silent', POOL_MAX_PER_TENANT: '10', RATE_LIMIT_MAX: '100000000' })
const child = spawn(process.execPath, [...CPU_PROF, '--import', 'tsx', fileURLToPath(new URL('./lib/request-plane-server.ts', import.meta.url))], {
  env: { ...process.env, ...env.vars },
  stdio: ['ignore', 'pipe', 'inherit'],
})
try {
  const info = await new Promise<{ appPort: number; barePort: number; cookie: string; apiKey: string; projectId: string }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)))
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
  })
  const run = (port: number, path: string, headers: Record<string, string> = {}, duration = DURATION_S) =>
    runAutocannon({ url: `http://127.0.0.1:${port}${path}`, connections: CONNECTIONS, duration, headers } as AutocannonOptions)

  // utime + stime of the server process in clock ticks (USER_HZ, 100 on Linux): CPU spent per scenario.
  const cpuTicks = () => {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return Number(fields[11]) + Number(fields[12])
  }
  const cpu = { app: 0, bare: 0, keyed: 0 }
  const measured = async (name: keyof typeof cpu, scenario: () => Promise<AutocannonResult>) => {
    const before = cpuTicks()
    const result = await scenario()
    cpu[name] += cpuTicks() - before
    return result
  }

  const app = () => run(info.appPort, `/api/projects/${info.projectId}`, { cookie: info.cookie })
  const bare = () => run(info.barePort, `/projects/${info.projectId}`)
  const keyed = () => run(info.appPort, `/api/projects/${info.projectId}`, { authorization: `Bearer ${info.apiKey}` })
  // Warm both (JIT, pools, prepared statements) before measuring.
  await run(info.appPort, `/api/projects/${info.projectId}`, { cookie: info.cookie }, 3)
  await run(info.barePort, `/projects/${info.projectId}`, {}, 3)

  const results: { app: AutocannonResult[]; bare: AutocannonResult[]; keyed: AutocannonResult[] } = { app: [], bare: [], keyed: [] }
  for (let round = 0; round < ROUNDS; round++) {
    results.bare.push(await measured('bare', bare))
    results.app.push(await measured('app', app))
    results.keyed.push(await measured('keyed', keyed))
  }
  const mean = (rs: AutocannonResult[], f: (r: AutocannonResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length
  const rps = (rs: AutocannonResult[]) => mean(rs, (r) => r.requests.average)
  const bad = (rs: AutocannonResult[]) => rs.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0)
  console.log(`bare fastify + postgres.js req/s: ${rps(results.bare).toFixed(0)}`)
  console.log(`bare p99 ms: ${mean(results.bare, (r) => r.latency.p99).toFixed(1)}`)
  console.log(`app GET /api/projects/:id req/s: ${rps(results.app).toFixed(0)}`)
  console.log(`app p99 ms: ${mean(results.app, (r) => r.latency.p99).toFixed(1)}`)
  console.log(`ratio app/bare: ${(rps(results.app) / rps(results.bare)).toFixed(2)}`)
  console.log(`app with an API key req/s: ${rps(results.keyed).toFixed(0)}`)
  console.log(`app with an API key p99 ms: ${mean(results.keyed, (r) => r.latency.p99).toFixed(1)}`)
  console.log(`ratio api-key/bare: ${(rps(results.keyed) / rps(results.bare)).toFixed(2)}`)
  const total = (rs: AutocannonResult[]) => rs.reduce((s, r) => s + r.requests.total, 0)
  const cpuUs = (name: keyof typeof cpu, rs: AutocannonResult[]) => (cpu[name] * 10_000) / total(rs)
  console.log(`server CPU µs/request (bare, app, api key): ${cpuUs('bare', results.bare).toFixed(0)}, ${cpuUs('app', results.app).toFixed(0)}, ${cpuUs('keyed', results.keyed).toFixed(0)}`)
  console.log(`CPU ratio bare/app: ${(cpuUs('bare', results.bare) / cpuUs('app', results.app)).toFixed(2)}`)
  console.log(`CPU ratio bare/api-key: ${(cpuUs('bare', results.bare) / cpuUs('keyed', results.keyed)).toFixed(2)}`)
  console.log(`errors or non-2xx (app, api key, bare): ${bad(results.app)}, ${bad(results.keyed)}, ${bad(results.bare)}`)
} finally {
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  await env.cleanup()
}
