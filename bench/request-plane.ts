/**
 * The request plane's overhead: an authenticated `GET /api/projects/:id` (session in Redis → user →
 * membership → catalog → tenant pool → role → SELECT) against a bare Fastify + postgres.js route doing
 * the same SELECT on the same database, measured alternately in one run. The same route with an API
 * key (no session round trip to Redis) is measured too, to show what the session costs.
 *
 *   npx tsx bench/request-plane.ts        (BENCH_DURATION_S per round, default 30; BENCH_ROUNDS per repeat, default 2)
 *   BENCH_CPU_PROF=/tmp/prof npx tsx bench/request-plane.ts   (writes the app's and bare's .cpuprofile there on exit)
 *   BENCH_NODE_FLAGS='--max-semi-space-size=64' …   Node flags for the current app's process; BENCH_BARE_FLAGS for bare's
 *   BENCH_ALLOC_PROF=/tmp/prof …   the app's allocations (sampled, collected ones included) as a .heapprofile there
 *   BENCH_BASELINE_REF=<commit> npx tsx bench/request-plane.ts
 *       also runs the app as of that commit (a temporary git worktree, its own server process and test
 *       world), so before and after are measured in the same run, rounds interleaved, against one bare server.
 *   BENCH_REPEATS (default 2): each repeat starts fresh server processes; with a baseline they alternate which
 *       app process starts first (BENCH_BASELINE_FIRST=1: the baseline's, in the first repeat). The app process
 *       started first measured up to ~15 % dearer than the second with the same commit in both (2026-12-03,
 *       quiet machine), so one repeat can't tell a before/after apart; the figures are the mean of all repeats.
 *   BENCH_PIN=1/0 pins every server process to CPU 1 and the load generator to CPU 0 (taskset): it did not
 *       remove that bias.
 *
 * Bare runs in a process of its own: when one process served both, bare and app requests shared its JIT and
 * heap, and the app measured 10-18 % dearer than the same commit served alone as the baseline (a run with
 * BENCH_BASELINE_REF=HEAD showed it), which also biased every before/after in favour of "before".
 *
 * Prints req/s, p99 and the ratio to bare per subject (issue 14's goals: ≥ 0.7 with a session cookie,
 * ≥ 0.8 with an API key, p99 within 1 ms of bare at 50 connections), the load average after each round,
 * and the server's CPU time per request (Linux /proc), which other load on a shared machine disturbs far
 * less than req/s does.
 *
 * Then the latency at a fixed offered load: every subject at the same evenly paced rate over up to the same
 * 50 connections (lib/paced.ts; BENCH_RATE req/s, default half the session subject's saturated req/s of the
 * repeat, which every subject can serve). At saturation a p99 is queueing behind the slowest server, so it
 * restates the req/s ratio; at a rate all of them sustain it is what a request pays in latency for the kit.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import setup from '../test/global-setup.js'
import { createTestEnv, type TestEnv } from '../test/helpers/test-env.js'
import { type AutocannonResult, runAutocannon } from './lib/autocannon.js'
import { type PacedResult, runPaced } from './lib/paced.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 30)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const CPU_PROF = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []
const flags = (v: string | undefined) => (v ? v.split(' ').filter(Boolean) : [])
/** Node flags of the current app's process (BENCH_NODE_FLAGS) and of bare's (BENCH_BARE_FLAGS). */
const APP_FLAGS = [...flags(process.env.BENCH_NODE_FLAGS), ...CPU_PROF]
const BARE_FLAGS = [...flags(process.env.BENCH_BARE_FLAGS), ...CPU_PROF]
const BASELINE_REF = process.env.BENCH_BASELINE_REF
const BASELINE_FIRST = process.env.BENCH_BASELINE_FIRST === '1'
const REPEATS = Number(process.env.BENCH_REPEATS ?? 2)
const RATE = process.env.BENCH_RATE ? Number(process.env.BENCH_RATE) : undefined
const PIN = process.env.BENCH_PIN ? { server: process.env.BENCH_PIN.split('/')[0]!, client: process.env.BENCH_PIN.split('/')[1]! } : undefined
const root = fileURLToPath(new URL('..', import.meta.url))
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ')

interface ServerInfo {
  appPort: number
  cookie: string
  apiKey: string
  projectId: string
  dbUrl: string
}
interface Server {
  child: ChildProcess
  info: ServerInfo
  env?: TestEnv
}

/** A child process running `script`, once it printed its JSON line. */
async function startProcess<T>(tree: string, script: string, profile: string[], vars: Record<string, string>): Promise<{ child: ChildProcess; info: T }> {
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', join(tree, script)], {
    cwd: tree,
    env: { ...process.env, ...vars },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const info = await new Promise<T>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)))
    child.once('exit', (code) => reject(new Error(`${script} in ${tree} exited with ${code}`)))
  })
  return { child, info }
}

/** The app (its own test world and process) from the source tree at `tree`. */
async function startServer(tree: string, profile: string[]): Promise<Server> {
  const env = await createTestEnv({ LOG_LEVEL: 'silent', POOL_MAX_PER_TENANT: '10', RATE_LIMIT_MAX: '100000000' })
  return { ...(await startProcess<ServerInfo>(tree, 'bench/lib/request-plane-server.ts', profile, env.vars)), env }
}

async function stopServer(s: { child: ChildProcess; env?: TestEnv }) {
  s.child.kill('SIGTERM')
  await new Promise((r) => s.child.once('exit', r))
  await s.env?.cleanup()
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

interface Subject {
  name: string
  pid: number
  target: { url: string; headers: Record<string, string> }
}
const results = new Map<string, { runs: AutocannonResult[]; ticks: number; loads: string[]; paced: PacedResult[] }>()
const rates: number[] = []
const names: string[] = []

/**
 * One repeat: fresh server processes (and test worlds), warmed, then ROUNDS interleaved rounds. With a
 * baseline, `baselineFirst` starts its process before the current one's: the app process started first
 * measured up to ~15 % dearer than the one started after it with the same commit on both sides, so repeats
 * alternate the order and the figures are their mean.
 */
async function repeat(baselineFirst: boolean) {
  const early = baselineTree && baselineFirst ? await startServer(baselineTree, []) : undefined
  const current = await startServer(root, APP_FLAGS)
  // Bare in a process of its own, on the current app's tenant database, so every server process serves one kind of request.
  const bare = await startProcess<{ barePort: number }>(root, 'bench/lib/bare-server.ts', BARE_FLAGS, {
    ...current.env!.vars,
    BARE_DB_URL: current.info.dbUrl,
  })
  const baseline = early ?? (baselineTree ? await startServer(baselineTree, []) : undefined)
  try {
    if (PIN) {
      // Every server process (all its threads) on one CPU, the load generator on the other.
      for (const s of [current, bare, baseline]) if (s) execFileSync('taskset', ['-a', '-cp', PIN.server, String(s.child.pid)], { stdio: 'ignore' })
      execFileSync('taskset', ['-a', '-cp', PIN.client, String(process.pid)], { stdio: 'ignore' })
    }
    const target = (port: number, path: string, headers: Record<string, string> = {}) => ({ url: `http://127.0.0.1:${port}${path}`, headers })
    const app = (s: Server) => target(s.info.appPort, `/api/projects/${s.info.projectId}`, { cookie: s.info.cookie })
    const keyed = (s: Server) => target(s.info.appPort, `/api/projects/${s.info.projectId}`, { authorization: `Bearer ${s.info.apiKey}` })
    const subjects: Subject[] = [
      { name: 'bare', pid: bare.child.pid!, target: target(bare.info.barePort, `/projects/${current.info.projectId}`) },
      { name: 'session', pid: current.child.pid!, target: app(current) },
      { name: 'api key', pid: current.child.pid!, target: keyed(current) },
    ]
    if (baseline) {
      subjects.push({ name: `session @${BASELINE_REF}`, pid: baseline.child.pid!, target: app(baseline) })
      subjects.push({ name: `api key @${BASELINE_REF}`, pid: baseline.child.pid!, target: keyed(baseline) })
    }
    for (const s of subjects) {
      if (!results.has(s.name)) {
        results.set(s.name, { runs: [], ticks: 0, loads: [], paced: [] })
        names.push(s.name)
      }
    }
    const go = (s: Subject, duration = DURATION_S) => runAutocannon({ ...s.target, connections: CONNECTIONS, duration })
    // Warm every subject (JIT, pools, prepared statements, caches) before measuring.
    for (const s of subjects) await go(s, 5)
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of subjects) {
        const r = results.get(s.name)!
        const before = cpuTicks(s.pid)
        r.runs.push(await go(s))
        r.ticks += cpuTicks(s.pid) - before
        r.loads.push(load())
      }
    }
    // The same offered load for every subject: latency, not capacity.
    const sessionRuns = results.get('session')!.runs.slice(-ROUNDS)
    const rate = RATE ?? Math.round((0.5 * sessionRuns.reduce((sum, x) => sum + x.requests.average, 0)) / sessionRuns.length)
    rates.push(rate)
    for (const s of subjects)
      results.get(s.name)!.paced.push(await runPaced({ ...s.target, rate, durationS: DURATION_S, connections: CONNECTIONS }))
  } finally {
    await stopServer(bare)
    await stopServer(current)
    if (baseline) await stopServer(baseline)
  }
}

try {
  for (let i = 0; i < REPEATS; i++) await repeat(i % 2 === 1 ? !BASELINE_FIRST : BASELINE_FIRST)
  const mean = <R>(rs: R[], f: (r: R) => number) => rs.reduce((sum, r) => sum + f(r), 0) / rs.length
  const rps = (name: string) => mean(results.get(name)!.runs, (r) => r.requests.average)
  const p99 = (name: string) => mean(results.get(name)!.runs, (r) => r.latency.p99)
  const cpuUs = (name: string) => {
    const r = results.get(name)!
    return (r.ticks * 10_000) / r.runs.reduce((sum, x) => sum + x.requests.total, 0)
  }
  console.log(`${CONNECTIONS} connections, ${REPEATS} repeat(s) × ${ROUNDS} rounds × ${DURATION_S} s per subject, interleaved`)
  console.log('subject | req/s | ratio to bare | p99 ms | p99 − bare p99 | server CPU µs/req | bare/subject CPU | errors | load avg after each round')
  for (const name of names) {
    const r = results.get(name)!
    const bad = r.runs.reduce((sum, x) => sum + x.non2xx + x.errors + x.timeouts, 0)
    console.log(
      [
        name,
        rps(name).toFixed(0),
        (rps(name) / rps('bare')).toFixed(2),
        p99(name).toFixed(1),
        (p99(name) - p99('bare')).toFixed(1),
        cpuUs(name).toFixed(0),
        (cpuUs('bare') / cpuUs(name)).toFixed(2),
        bad,
        r.loads.join(' / '),
      ].join(' | '),
    )
  }
  console.log(`\nat a fixed rate (${rates.join(' / ')} req/s per repeat, ${CONNECTIONS} connections)`)
  console.log('subject | req/s served | p50 ms | p99 ms | p99.9 ms | p99 − bare p99 | errors')
  const paced = (name: string, f: (r: PacedResult) => number) => mean(results.get(name)!.paced, f)
  for (const name of names) {
    const bad = results.get(name)!.paced.reduce((sum, x) => sum + x.non2xx + x.errors, 0)
    console.log(
      [
        name,
        paced(name, (r) => r.rate).toFixed(0),
        paced(name, (r) => r.p50).toFixed(2),
        paced(name, (r) => r.p99).toFixed(2),
        paced(name, (r) => r.p999).toFixed(2),
        (paced(name, (r) => r.p99) - paced('bare', (r) => r.p99)).toFixed(2),
        bad,
      ].join(' | '),
    )
  }
} finally {
  if (baselineTree) {
    rmSync(join(baselineTree, 'node_modules'))
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', baselineTree], { stdio: 'ignore' })
  }
}
