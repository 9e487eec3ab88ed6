/**
 * Realtime fan-out (src/features/realtime): N concurrent SSE connections spread over T tenants on ONE app
 * process, events published at M per second (round robin over the tenants, each to its tenant's replay
 * buffer and channel, as a domain event's listener does) from this process; every client measures the
 * delay from the event's `occurredAt` to its arrival. The same load runs against a bare fan-out in the
 * same server process (bench/lib/realtime-server.ts: node:http + one Redis subscriber, nothing else), so
 * the ratio app/bare is what the kit's hub costs. autocannon can't hold streams open: this is node:http.
 *
 *   npm run bench:realtime
 *   BENCH_CONNECTIONS=5000 BENCH_TENANTS=100 BENCH_EVENTS_PER_S=1000 BENCH_DURATION_S=20 npm run bench:realtime
 *
 * Defaults are issue 16's target (5,000 connections, 100 tenants, 1,000 events/s); the first line says
 * what ran. Prints, one figure per line: connect time, delivery p50/p99/max (ms) and deliveries/s for
 * each, lost deliveries, the server's RSS growth per connection (KiB, after a full GC, before and after
 * connecting; the app's round runs first in the fresh process), JS heap per connection, and the ratios
 * app/bare (delivery p99, JS heap per connection). Client and server share the machine (2 cores here): the client's
 * parsing is in the measured delay too, equally for both.
 */
import { spawn } from 'node:child_process'
import { Agent, request } from 'node:http'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { uuidv7 } from 'uuidv7'
import type { DomainEvent } from '../src/core/events/domain-events.js'
import { publishRealtime, realtimeKeys } from '../src/features/realtime/stream.js'
import setup from '../test/global-setup.js'
import { createTestEnv } from '../test/helpers/test-env.js'

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 5000)
const TENANTS = Number(process.env.BENCH_TENANTS ?? 100)
const RATE = Number(process.env.BENCH_EVENTS_PER_S ?? 1000)
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 20)
const WARMUP_S = 3
/** Every SAMPLE_EVERY-th connection measures (the rest only drain). */
const SAMPLE_EVERY = Number(process.env.BENCH_SAMPLE_EVERY ?? 10)
const root = fileURLToPath(new URL('..', import.meta.url))
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')

interface Info {
  appPort: number
  barePort: number
  tenants: { id: string; slug: string; cookie: string }[]
}

await setup()
const env = await createTestEnv({
  LOG_LEVEL: 'silent',
  SHARED_DATABASE_URL: 'auto',
  TENANT_ISOLATION: 'shared',
  RATE_LIMIT_MAX: '1000000000',
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
  REALTIME_MAX_PER_TENANT: '0',
  REALTIME_MAX_PER_USER: '0',
  REALTIME_MAX_BUFFER_KB: '4096',
})
const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, 'bench/lib/realtime-server.ts')], {
  cwd: root,
  env: { ...process.env, ...env.vars, BENCH_TENANTS: String(TENANTS) },
  stdio: ['pipe', 'pipe', 'inherit'],
})
const lines = createInterface({ input: child.stdout! })
let exited: ((err: Error) => void) | undefined
child.once('exit', (code) => exited?.(new Error(`server exited with ${code}`)))
const nextLine = () =>
  new Promise<string>((resolve, reject) => {
    exited = reject
    lines.once('line', resolve)
  })
const info = JSON.parse(await nextLine()) as Info
const mem = async () => {
  child.stdin!.write('mem\n')
  return JSON.parse(await nextLine()) as { rss: number; heapUsed: number; connections: number; bare: number }
}

const redis = new Redis(env.vars.REDIS_URL!)
const keys = realtimeKeys(env.vars.REDIS_PREFIX!)
const agent = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY })

interface Round {
  connectMs: number
  latencies: number[]
  delivered: number
  expected: number
  rssPerConnKiB: number
  heapPerConnKiB: number
  rssOpen: number
}

/**
 * One client. A sampled one (every SAMPLE_EVERY-th) times each event of its tenant from its
 * `occurredAt`; the others only drain their socket (as cheaply as a client can), so the bench process
 * spends its CPU on the measurement, not on parsing 50,000 frames a second.
 */
function connect(port: number, path: string, headers: Record<string, string>, sink: Sink | undefined) {
  return new Promise<() => void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream', ...headers }, agent }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`connect: ${res.statusCode}`))
        res.resume()
        return
      }
      res.on('error', () => {})
      resolve(() => req.destroy())
      if (!sink) {
        res.resume()
        return
      }
      res.setEncoding('utf8')
      let rest = ''
      res.on('data', (chunk: string) => {
        const now = Date.now()
        rest += chunk
        let at = rest.indexOf('"occurredAt":"')
        while (at >= 0) {
          const end = rest.indexOf('"', at + 14)
          if (end < 0) break
          if (sink.measuring) {
            sink.latencies.push(now - Date.parse(rest.slice(at + 14, end)))
            sink.delivered++
          }
          rest = rest.slice(end)
          at = rest.indexOf('"occurredAt":"')
        }
        if (rest.length > 4096) rest = rest.slice(-4096)
      })
    })
    req.on('error', reject)
    req.end()
  })
}
interface Sink {
  measuring: boolean
  latencies: number[]
  delivered: number
}

async function round(subject: 'app' | 'bare', connections = CONNECTIONS, seconds = DURATION_S): Promise<Round> {
  const before = await mem()
  const sink: Sink = { measuring: false, latencies: [], delivered: 0 }
  const sampledPerTenant = info.tenants.map(() => 0)
  const closers: (() => void)[] = []
  const t0 = performance.now()
  const BATCH = 200
  for (let i = 0; i < connections; i += BATCH) {
    const batch = []
    for (let j = i; j < Math.min(i + BATCH, connections); j++) {
      const t = info.tenants[j % info.tenants.length]!
      const sampled = j % SAMPLE_EVERY === 0 ? sink : undefined
      if (sampled) sampledPerTenant[j % info.tenants.length]!++
      batch.push(
        subject === 'app'
          ? connect(info.appPort, '/api/events/stream', { cookie: t.cookie, 'x-tenant-id': t.slug }, sampled)
          : connect(info.barePort, `/?tenant=${t.id}`, {}, sampled),
      )
    }
    closers.push(...(await Promise.all(batch)))
  }
  const connectMs = performance.now() - t0
  await new Promise((r) => setTimeout(r, 2000))
  const after = await mem()
  if ((subject === 'app' ? after.connections : after.bare) !== connections)
    throw new Error(`${subject}: ${JSON.stringify(after)} open, not ${connections}`)

  // Publish at RATE for WARMUP_S + seconds, counting what is owed during the measured part.
  let published = 0
  let expected = 0
  let next = 0
  const start = Date.now()
  const total = (WARMUP_S + seconds) * 1000
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - start
      sink.measuring = elapsed >= WARMUP_S * 1000
      const owed = Math.floor((Math.min(elapsed, total) / 1000) * RATE) - published
      for (let k = 0; k < owed; k++) {
        const ti = next++ % info.tenants.length
        const event: DomainEvent = {
          id: uuidv7(),
          type: 'project.updated',
          tenantId: info.tenants[ti]!.id,
          occurredAt: new Date().toISOString(),
          data: { project: { id: uuidv7(), name: `bench ${published}`, description: null, status: 'active' } } as never,
        }
        void publishRealtime(redis, keys, event, { replayMax: 1000, replayTtlMs: 600_000 })
        published++
        if (sink.measuring) expected += sampledPerTenant[ti]!
      }
      if (elapsed >= total) {
        clearInterval(tick)
        resolve()
      }
    }, 5)
  })
  await new Promise((r) => setTimeout(r, 1000)) // the last ones in flight
  sink.measuring = false
  for (const close of closers) close()
  // Both servers see the clients go before the next round measures its baseline.
  for (let i = 0; i < 100; i++) {
    const m = await mem()
    if ((subject === 'app' ? m.connections : m.bare) === 0) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    connectMs,
    latencies: sink.latencies,
    delivered: sink.delivered,
    expected,
    rssPerConnKiB: (after.rss - before.rss) / 1024 / connections,
    heapPerConnKiB: (after.heapUsed - before.heapUsed) / 1024 / connections,
    rssOpen: after.rss,
  }
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN

console.log(
  `realtime fan-out: ${CONNECTIONS} SSE connections over ${TENANTS} tenants on one process, ${RATE} events/s, ${DURATION_S} s measured (+${WARMUP_S} s warm-up), load ${load()}`,
)
const results: Record<string, Round & { p50: number; p95: number; p99: number; max: number }> = {}
// The app first, in the fresh server process: its RSS growth is what its connections cost. The bare round
// after it reuses memory the first one freed, so its RSS delta reads low: compare JS heap per connection.
for (const subject of ['app', 'bare'] as const) {
  const r = await round(subject)
  const sorted = Float64Array.from(r.latencies).sort() as unknown as number[]
  results[subject] = {
    ...r,
    p50: pct(sorted, 50),
    p95: pct(sorted, 95),
    p99: pct(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  }
  const x = results[subject]!
  console.log(`${subject} connect ${CONNECTIONS} (s): ${(x.connectMs / 1000).toFixed(2)}`)
  console.log(`${subject} delivery p50 (ms): ${x.p50}`)
  console.log(`${subject} delivery p95 (ms): ${x.p95}`)
  console.log(`${subject} delivery p99 (ms): ${x.p99}`)
  console.log(`${subject} delivery max (ms): ${x.max}`)
  console.log(`${subject} deliveries/s (all clients, from the sampled ones): ${Math.round((x.delivered * SAMPLE_EVERY) / DURATION_S)}`)
  console.log(
    `${subject} deliveries missing 1 s after the end (sampled clients): ${Math.max(0, x.expected - x.delivered)} of ${x.expected}`,
  )
  console.log(
    `${subject} RSS growth per connection (KiB)${subject === 'bare' ? ' (memory reused, reads low)' : ''}: ${x.rssPerConnKiB.toFixed(1)}`,
  )
  console.log(`${subject} server RSS with ${CONNECTIONS} open (MiB): ${(x.rssOpen / 1024 / 1024).toFixed(0)}`)
  console.log(`${subject} JS heap per connection (KiB): ${x.heapPerConnKiB.toFixed(1)}`)
  console.log(`${subject} load after: ${load()}`)
}
const app = results.app!
const bare = results.bare!
console.log(`ratio app/bare delivery p99: ${(app.p99 / Math.max(1, bare.p99)).toFixed(2)}`)
console.log(`ratio app/bare JS heap per connection: ${(app.heapPerConnKiB / bare.heapPerConnKiB).toFixed(2)}`)

child.kill('SIGTERM')
await new Promise((r) => child.once('exit', r))
redis.disconnect()
agent.destroy()
await env.cleanup()
