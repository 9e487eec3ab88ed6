/**
 * The request plane's overhead: an authenticated `GET /api/projects/:id` (session in Redis → user →
 * membership → catalog → tenant pool → role → SELECT) against a bare Fastify + postgres.js route doing
 * the same SELECT on the same database, measured alternately in one run. The same route with an API
 * key (no session round trip to Redis) is measured too, to show what the session costs.
 *
 *   npx tsx bench/request-plane.ts        (BENCH_DURATION_S per round, default 30; BENCH_ROUNDS, default 2)
 *   BENCH_CPU_PROF=/tmp/prof npx tsx bench/request-plane.ts   (writes the server's .cpuprofile there on exit)
 *   BENCH_BASELINE_REF=<commit> npx tsx bench/request-plane.ts
 *       also runs the app as of that commit (a temporary git worktree, its own server process and test
 *       world), so before and after are measured in the same run, rounds interleaved, against one bare server.
 *
 * Prints req/s, p99 and the ratio to bare per subject (issue 14's goals: ≥ 0.7 with a session cookie,
 * ≥ 0.8 with an API key, p99 within 1 ms of bare at 50 connections), the load average after each round,
 * and the server's CPU time per request (Linux /proc), which other load on a shared machine disturbs far
 * less than req/s does.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import setup from '../test/global-setup.js'
import { createTestEnv, type TestEnv } from '../test/helpers/test-env.js'
import { type AutocannonOptions, type AutocannonResult, runAutocannon } from './lib/autocannon.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 30)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const CPU_PROF = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []
const BASELINE_REF = process.env.BENCH_BASELINE_REF
const root = fileURLToPath(new URL('..', import.meta.url))
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ')

interface ServerInfo {
  appPort: number
  barePort: number
  cookie: string
  apiKey: string
  projectId: string
}
interface Server {
  child: ChildProcess
  info: ServerInfo
  env: TestEnv
}

/** One server process (the app and a bare server side by side) from the source tree at `tree`. */
async function startServer(tree: string, profile: string[]): Promise<Server> {
  const env = await createTestEnv({ LOG_LEVEL: 'silent', POOL_MAX_PER_TENANT: '10', RATE_LIMIT_MAX: '100000000' })
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', join(tree, 'bench/lib/request-plane-server.ts')], {
    cwd: tree,
    env: { ...process.env, ...env.vars },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const info = await new Promise<ServerInfo>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)))
    child.once('exit', (code) => reject(new Error(`server in ${tree} exited with ${code}`)))
  })
  return { child, info, env }
}

async function stopServer(s: Server) {
  s.child.kill('SIGTERM')
  await new Promise((r) => s.child.once('exit', r))
  await s.env.cleanup()
}

// utime + stime of a process in clock ticks (USER_HZ, 100 on Linux): CPU spent per scenario.
const cpuTicks = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return Number(fields[11]) + Number(fields[12])
}

await setup()
let baselineTree: string | undefined
if (BASELINE_REF) {
  baselineTree = mkdtempSync(join(tmpdir(), 'rp-baseline-'))
  execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', baselineTree, BASELINE_REF], { stdio: 'ignore' })
  symlinkSync(join(root, 'node_modules'), join(baselineTree, 'node_modules'))
}
const current = await startServer(root, CPU_PROF)
const baseline = baselineTree ? await startServer(baselineTree, []) : undefined
try {
  const run = (port: number, path: string, headers: Record<string, string> = {}, duration = DURATION_S) =>
    runAutocannon({ url: `http://127.0.0.1:${port}${path}`, connections: CONNECTIONS, duration, headers } as AutocannonOptions)
  const app = (s: Server) => (d?: number) => run(s.info.appPort, `/api/projects/${s.info.projectId}`, { cookie: s.info.cookie }, d)
  const keyed = (s: Server) => (d?: number) =>
    run(s.info.appPort, `/api/projects/${s.info.projectId}`, { authorization: `Bearer ${s.info.apiKey}` }, d)
  const subjects: { name: string; pid: number; go: (duration?: number) => Promise<AutocannonResult> }[] = [
    { name: 'bare', pid: current.child.pid!, go: (d) => run(current.info.barePort, `/projects/${current.info.projectId}`, {}, d) },
    { name: 'session', pid: current.child.pid!, go: app(current) },
    { name: 'api key', pid: current.child.pid!, go: keyed(current) },
  ]
  if (baseline) {
    subjects.push({ name: `session @${BASELINE_REF}`, pid: baseline.child.pid!, go: app(baseline) })
    subjects.push({ name: `api key @${BASELINE_REF}`, pid: baseline.child.pid!, go: keyed(baseline) })
  }
  // Warm every subject (JIT, pools, prepared statements, caches) before measuring.
  for (const s of subjects) await s.go(5)
  const results = new Map(subjects.map((s) => [s.name, { runs: [] as AutocannonResult[], ticks: 0, loads: [] as string[] }]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of subjects) {
      const r = results.get(s.name)!
      const before = cpuTicks(s.pid)
      r.runs.push(await s.go())
      r.ticks += cpuTicks(s.pid) - before
      r.loads.push(load())
    }
  }
  const mean = (rs: AutocannonResult[], f: (r: AutocannonResult) => number) => rs.reduce((sum, r) => sum + f(r), 0) / rs.length
  const rps = (name: string) => mean(results.get(name)!.runs, (r) => r.requests.average)
  const p99 = (name: string) => mean(results.get(name)!.runs, (r) => r.latency.p99)
  const cpuUs = (name: string) => {
    const r = results.get(name)!
    return (r.ticks * 10_000) / r.runs.reduce((sum, x) => sum + x.requests.total, 0)
  }
  console.log(`${CONNECTIONS} connections, ${ROUNDS} rounds × ${DURATION_S} s per subject, interleaved`)
  console.log('subject | req/s | ratio to bare | p99 ms | p99 − bare p99 | server CPU µs/req | bare/subject CPU | errors | load avg after each round')
  for (const s of subjects) {
    const r = results.get(s.name)!
    const bad = r.runs.reduce((sum, x) => sum + x.non2xx + x.errors + x.timeouts, 0)
    console.log(
      [
        s.name,
        rps(s.name).toFixed(0),
        (rps(s.name) / rps('bare')).toFixed(2),
        p99(s.name).toFixed(1),
        (p99(s.name) - p99('bare')).toFixed(1),
        cpuUs(s.name).toFixed(0),
        (cpuUs('bare') / cpuUs(s.name)).toFixed(2),
        bad,
        r.loads.join(' / '),
      ].join(' | '),
    )
  }
} finally {
  await stopServer(current)
  if (baseline) await stopServer(baseline)
  if (baselineTree) {
    rmSync(join(baselineTree, 'node_modules'))
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', baselineTree], { stdio: 'ignore' })
  }
}
