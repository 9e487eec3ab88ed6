/**
 * Fault bench: the PRODUCTION build (`npm run build`; `node dist/src/server.js` + `node dist/src/worker.js`,
 * NODE_ENV=production) against a Postgres cluster and a Redis instance of its own (test/helpers/scratch-services.ts,
 * free ports, never the shared ones), with an SMTP sink. Scenarios, each printed one figure per line:
 *
 *   1. Postgres stopped 5 s, then crashed 5 s, under load    2. Redis stopped (SIGKILL) 5 s under load
 *   3. 1,000 requests aborted while waiting for connection budget (a server with budget 2, 1 per tenant,
 *      both slots held by requests blocked on a table lock the bench holds)
 *   4. worker SIGKILLed mid-batch of provisioning + email jobs, then restarted
 *
 *   npm run bench:faults      (BENCH_SKIP_BUILD=1 reuses dist/; BENCH_SCENARIOS=outages,aborts,kill picks some;
 *                              BENCH_LOAD_CONCURRENCY, BENCH_EMAILS, BENCH_TENANTS)
 *
 * Ends with the goals of issue 9 this run missed (0 × 500, every outage answer a 503 within 2 s, first 2xx
 * < 2 s after recovery, full budget free, 0 emails lost or sent twice) and exits 2 when there is one.
 *
 * Load is loopback only and bounded in count and time: a few sequential loops for a fixed window.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { request as httpRequest } from 'node:http'
import { fileURLToPath } from 'node:url'
import { connect, withDatabase } from '../src/core/db/connect.js'
import { freePort, type ScratchPostgres, type ScratchRedis, startScratchPostgres, startScratchRedis } from '../test/helpers/scratch-services.js'
import { type SmtpCapture, startSmtpCapture } from '../test/helpers/smtp.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const CONCURRENCY = Number(process.env.BENCH_LOAD_CONCURRENCY ?? 8)
const EMAILS = Number(process.env.BENCH_EMAILS ?? 150)
const TENANTS = Number(process.env.BENCH_TENANTS ?? 5) // a user may own 5 tenants (quota)
const OUTAGE_MS = 5000
/** BENCH_SCENARIOS=outages,aborts,kill (default: all). */
const SCENARIOS = new Set((process.env.BENCH_SCENARIOS ?? 'outages,aborts,kill').split(',').map((x) => x.trim()))
const runs = (scenario: 'outages' | 'aborts' | 'kill') => SCENARIOS.has(scenario)

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
/** Goals of issue 9 missed in this run, printed at the end. */
const missed: string[] = []
const goal = (ok: boolean, what: string) => {
  if (!ok) missed.push(what)
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v) return v as T
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

// ---------------------------------------------------------------------------------------------------
let pg: ScratchPostgres | undefined
let redis: ScratchRedis | undefined
let smtp: SmtpCapture | undefined
const children = new Set<ChildProcess>()

function startProcess(script: string, env: Record<string, string>, args: string[] = []): { proc: ChildProcess; out: () => string } {
  const proc = spawn(process.execPath, [script, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  children.add(proc)
  proc.once('exit', () => children.delete(proc))
  return { proc, out: () => out }
}

async function shutdown() {
  for (const child of children) child.kill('SIGKILL')
  pg?.destroy()
  await redis?.destroy()
  await smtp?.close()
}
process.on('SIGINT', () => {
  shutdown().finally(() => process.exit(130))
})

// ---------------------------------------------------------------------------------------------------
/** One HTTP request over a fresh socket; status 0 = network error, 'aborted' when the signal fired. */
function send(
  base: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown; signal?: AbortSignal } = {},
): Promise<{ status: number | 'aborted'; ms: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const started = performance.now()
  return new Promise((resolve) => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    const req = httpRequest(
      `${base}${path}`,
      {
        method: opts.method ?? 'GET',
        agent: false,
        signal: opts.signal,
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      },
      (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode!, ms: performance.now() - started, body, headers: res.headers }))
        res.on('error', () => resolve({ status: opts.signal?.aborted ? 'aborted' : 0, ms: performance.now() - started, body, headers: {} }))
      },
    )
    req.on('error', () => resolve({ status: opts.signal?.aborted ? 'aborted' : 0, ms: performance.now() - started, body: '', headers: {} }))
    req.end(payload)
  })
}

interface Sample {
  start: number
  end: number
  status: number | 'aborted'
}

/** CONCURRENCY sequential loops over `paths` until stop() (bounded by maxMs). */
function load(base: string, headers: Record<string, string>, paths: string[], maxMs: number) {
  const samples: Sample[] = []
  let running = true
  const deadline = Date.now() + maxMs
  const loops = Array.from({ length: CONCURRENCY }, async (_, i) => {
    let n = i
    while (running && Date.now() < deadline) {
      const start = performance.now()
      const res = await send(base, paths[n++ % paths.length]!, { headers })
      samples.push({ start, end: performance.now(), status: res.status })
    }
  })
  return {
    samples,
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}

function report(name: string, samples: Sample[], downAt: number, upAt: number) {
  const during = samples.filter((s) => s.start >= downAt && s.start < upAt)
  const byStatus = new Map<string, number>()
  for (const s of during) byStatus.set(String(s.status), (byStatus.get(String(s.status)) ?? 0) + 1)
  const firstOk = samples.filter((s) => s.start >= upAt && typeof s.status === 'number' && s.status < 300).sort((a, b) => a.end - b.end)[0]
  line(`${name}: requests during the outage by status`, [...byStatus].map(([k, v]) => `${k} × ${v}`).join(', ') || 'none')
  line(`${name}: 500s during and after`, samples.filter((s) => s.start >= downAt && s.status === 500).length)
  line(`${name}: max latency during the outage (ms)`, Math.round(Math.max(0, ...during.map((s) => s.end - s.start))))
  line(`${name}: outage answers slower than 2 s`, during.filter((s) => s.end - s.start > 2000).length)
  line(`${name}: seconds to first 2xx after recovery`, firstOk ? ((firstOk.end - upAt) / 1000).toFixed(2) : 'none')
  goal(!samples.some((s) => s.start >= downAt && s.status === 500), `${name}: no 500`)
  goal(during.every((s) => s.status === 503 || (typeof s.status === 'number' && s.status < 300)), `${name}: every outage answer a 503 (or served)`)
  goal(during.every((s) => s.end - s.start <= 2000), `${name}: every outage answer within 2 s`)
  goal(!!firstOk && firstOk.end - upAt < 2000, `${name}: first 2xx < 2 s after recovery`)
}

/** One gauge of a server's /metrics (NaN when absent). */
async function metricAt(base: string, token: string, name: string): Promise<number> {
  const m = (await send(base, '/metrics', { headers: { authorization: `Bearer ${token}` } })).body
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m)?.[1] ?? Number.NaN)
}

// ---------------------------------------------------------------------------------------------------
try {
  if (!process.env.BENCH_SKIP_BUILD) {
    const t0 = Date.now()
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8' })
    if (b.status !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`)
    line('build', `${((Date.now() - t0) / 1000).toFixed(1)} s`)
  }
  pg = await startScratchPostgres({ maxConnections: 300 }) // two servers and a worker, each within its own budget
  redis = await startScratchRedis({ appendonly: true })
  smtp = await startSmtpCapture()
  const hostUrl = await pg.createHostDatabase('tk_host')
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const metricsToken = randomBytes(12).toString('hex')
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: hostUrl,
    TENANT_DATABASE_URL: pg.appUrl,
    TENANT_DB_PREFIX: 'tkf',
    REDIS_URL: redis.url,
    REDIS_PREFIX: 'tkf',
    AUTO_MIGRATE: 'false',
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    SESSION_SECRETS: randomBytes(24).toString('hex'),
    COOKIE_SECURE: 'false',
    SMTP_HOST: smtp.host,
    SMTP_PORT: String(smtp.port),
    SMTP_STARTTLS: 'false',
    METRICS_TOKEN: metricsToken,
    RATE_LIMIT_MAX: '1000000',
    // Pools at their defaults (budget 60, 5 per tenant); scenario 3 runs a server of its own with a budget of 2.
    WORKER_CONCURRENCY: '10',
  }
  const server = startProcess('dist/src/server.js', env)
  const workerArgs = ['--lock-duration-ms', '3000', '--stalled-interval-ms', '1000']
  const workerEnv = { ...env, LOG_LEVEL: 'info' } // its "worker started" line is info
  let worker = startProcess('dist/src/worker.js', workerEnv, workerArgs)
  await until(async () => (await send(base, '/health/ready')).status === 200, 60_000, `server ready\n${server.out()}`)
  await until(() => worker.out().includes('worker started') || worker.proc.exitCode !== null, 60_000, 'worker started')
  line('settings', `production build, scratch Postgres :${pg.port} and Redis :${redis.port}, ${CONCURRENCY} load loops, outages ${OUTAGE_MS / 1000} s`)

  // A user, tenants provisioned by the worker (queue mode, as in production).
  const signup = await send(base, '/auth/signup', { method: 'POST', body: { email: 'bench@example.com', password: 'correct horse battery staple' } })
  if (signup.status !== 201) throw new Error(`signup ${signup.status} ${signup.body}`)
  const cookie = ([] as string[])
    .concat(signup.headers['set-cookie'] ?? [])
    .map((c) => c.split(';')[0])
    .join('; ')
  const csrf = JSON.parse((await send(base, '/auth/csrf', { headers: { cookie } })).body).token as string
  const slugs = [JSON.parse(signup.body).tenant.slug as string]
  for (let i = 1; i < TENANTS; i++) {
    const res = await send(base, '/tenants', { method: 'POST', headers: { cookie, 'x-csrf-token': csrf }, body: { name: `Bench ${i}`, slug: `bench-${i}` } })
    if (res.status !== 202 && res.status !== 201) throw new Error(`POST /tenants ${res.status} ${res.body}`)
    slugs.push(`bench-${i}`)
  }
  await until(
    async () => (await Promise.all(slugs.map((s) => send(base, '/api/projects', { headers: { cookie, 'x-tenant-id': s } })))).every((r) => r.status === 200),
    60_000,
    'tenants active',
  )
  const headers = { cookie, 'x-tenant-id': slugs[0]! }
  const paths = ['/api/projects', '/me', '/api/projects', '/billing/plans']

  // 1 + 2: outages under load.
  const outages = [
    // Async stop/start: a blocking pg_ctl would stall the load loops' clocks and inflate latencies.
    ['postgres stop 5 s', () => pg!.stopAsync('fast'), () => pg!.startAsync()],
    // A crash: connections cut with no goodbye, crash recovery on start (part of the outage here).
    ['postgres crash 5 s', () => pg!.stopAsync('immediate'), () => pg!.startAsync()],
    ['redis stop 5 s', () => redis!.kill(), () => redis!.start()],
  ] as const
  for (const [name, down, up] of runs('outages') ? outages : []) {
    const l = load(base, headers, paths, 30_000)
    await sleep(1500)
    const downAt = performance.now()
    await down()
    await sleep(OUTAGE_MS)
    await up()
    const upAt = performance.now()
    await until(() => l.samples.some((s) => s.start >= upAt && typeof s.status === 'number' && s.status < 300), 20_000, `${name}: first 2xx`)
    await sleep(1000)
    await l.stop()
    report(name, l.samples, downAt, upAt)
    await until(async () => (await metricAt(base, metricsToken, 'tenant_pool_leases')) === 0, 10_000, 'leases returned').catch(() => {})
    const budget = await metricAt(base, metricsToken, 'tenant_pool_budget')
    const leasesAfter = await metricAt(base, metricsToken, 'tenant_pool_leases')
    line(`${name}: budget free afterwards`, `${budget - leasesAfter}/${budget} slots`)
    goal(leasesAfter === 0, `${name}: full budget free afterwards`)
  }

  // 3: 1,000 requests aborted while they wait for budget. A server of its own with a budget of 2 and one
  // connection per tenant; both slots are held by requests to two tenants whose `projects` table the bench
  // has locked (they wait in their handlers, leases held), so every request to another tenant really waits.
  if (runs('aborts')) {
    const port3 = await freePort()
    const base3 = `http://127.0.0.1:${port3}`
    const server3 = startProcess('dist/src/server.js', {
      ...env,
      PORT: String(port3),
      POOL_CONNECTION_BUDGET: '2',
      POOL_MAX_PER_TENANT: '1',
      // Waiters and holders must still be waiting when the client gives up.
      POOL_ACQUIRE_TIMEOUT_MS: '120000',
      REQUEST_DEADLINE_MS: '0',
      DB_STATEMENT_TIMEOUT_MS: '0',
    })
    await until(async () => (await send(base3, '/health/ready')).status === 200, 60_000, `aborted-waiters server ready\n${server3.out()}`)
    const metric = (name: string) => metricAt(base3, metricsToken, name)
    const superHost = connect(withDatabase(pg.adminUrl, 'tk_host'), { max: 1 })
    const rows = await superHost<{ slug: string; db_name: string }[]>`select slug, db_name from core_tenants where slug in ${superHost(slugs.slice(0, 2))}`
    await superHost.end()
    let unlock: () => void = () => {}
    const unlocked = new Promise<void>((r) => {
      unlock = r
    })
    const lockers = rows.map((row) => connect(withDatabase(pg!.adminUrl, row.db_name), { max: 1 }))
    const locked = lockers.map(
      (db) =>
        new Promise<void>((resolveLocked, rejectLocked) => {
          db.begin(async (tx) => {
            await tx`lock table projects in access exclusive mode`
            resolveLocked()
            await unlocked
          }).catch(rejectLocked)
        }),
    )
    await Promise.all(locked)
    const holders = rows.map((row) => send(base3, '/api/projects', { headers: { cookie, 'x-tenant-id': row.slug } }))
    await until(async () => (await metric('tenant_pool_leases')) === 2, 30_000, 'both budget slots held')
    const waitingSlugs = slugs.slice(2)
    const ac = new AbortController()
    setMaxListeners(2000, ac.signal) // one listener per request
    const answers = Array.from({ length: 1000 }, (_, i) =>
      send(base3, '/api/projects', { headers: { cookie, 'x-tenant-id': waitingSlugs[i % waitingSlugs.length]! }, signal: ac.signal }),
    )
    const waiting = await until(async () => {
      const w = await metric('tenant_pool_waiters')
      return w >= 1000 && w
    }, 150_000, '1,000 waiters').catch(async () => `timed out at ${await metric('tenant_pool_waiters')}`)
    const leasesWhileWaiting = await metric('tenant_pool_leases')
    ac.abort()
    const results = await Promise.all(answers)
    const t0 = performance.now()
    const drained = await until(async () => (await metric('tenant_pool_waiters')) === 0, 10_000, 'no waiter left').then(
      () => ((performance.now() - t0) / 1000).toFixed(2),
      () => 'NOT within 10 s',
    )
    unlock()
    const held = await Promise.all(holders)
    await Promise.all(lockers.map((db) => db.end()))
    await until(async () => (await metric('tenant_pool_leases')) === 0, 10_000, 'no lease held').catch(() => {})
    const byStatus = new Map<string, number>()
    for (const r of results) byStatus.set(String(r.status), (byStatus.get(String(r.status)) ?? 0) + 1)
    line('aborted waiters: budget, tenants', `2 slots, 1 connection per tenant, 2 tenants holding both, 1,000 requests over ${waitingSlugs.length} others`)
    line('aborted waiters: waiting for budget when aborted', waiting)
    line('aborted waiters: leases held while they waited', leasesWhileWaiting)
    line('aborted waiters: requests by outcome', [...byStatus].map(([k, v]) => `${k} × ${v}`).join(', '))
    line('aborted waiters: seconds from the aborts to an empty queue', drained)
    line('aborted waiters: the two holders, answered once unlocked', held.map((r) => r.status).join(', '))
    const leases = await metric('tenant_pool_leases')
    const served: (number | 'aborted')[] = []
    for (const s of slugs) served.push((await send(base3, '/api/projects', { headers: { cookie, 'x-tenant-id': s } })).status)
    const together = await Promise.all(slugs.slice(3, 5).map((s) => send(base3, '/api/projects', { headers: { cookie, 'x-tenant-id': s } })))
    line('aborted waiters: tenants served afterwards, one after another', `${served.filter((st) => st === 200).length}/${slugs.length}`)
    line('aborted waiters: two new tenants served at once afterwards', together.map((r) => r.status).join(', '))
    line('aborted waiters: waiters / leases afterwards', `${await metric('tenant_pool_waiters')} / ${await metric('tenant_pool_leases')}`)
    line('aborted waiters: budget free afterwards', `${(await metric('tenant_pool_budget')) - leases}/${await metric('tenant_pool_budget')} slots`)
    goal(waiting === 1000, 'aborted waiters: 1,000 requests really waited')
    goal(leases === 0 && (await metric('tenant_pool_leases')) === 0 && (await metric('tenant_pool_waiters')) === 0, 'aborted waiters: full budget free')
    goal(served.every((st) => st === 200) && together.every((r) => r.status === 200), 'aborted waiters: every tenant served afterwards')
    server3.proc.kill('SIGTERM')
    await until(() => server3.proc.exitCode !== null || server3.proc.signalCode !== null, 15_000, 'aborted-waiters server exit').catch(() => server3.proc.kill('SIGKILL'))
  }

  // 4: worker SIGKILLed mid-batch of email + provisioning jobs, then restarted.
  if (runs('kill')) {
    const admin = connect(hostUrl, { max: 1 })
    const { createServices } = await import('../src/services.js')
    const { loadConfig } = await import('../src/core/config.js')
    const { pino } = await import('pino')
    const { createTenant } = await import('../src/core/tenancy/create-tenant.js')
    const producer = createServices(loadConfig({ ...env, NODE_ENV: 'production' }), pino({ level: 'warn' }))
    const before = smtp.messages.length
    const started = Date.now()
    const emails = producer.tasks.submitMany(
      'email.send',
      Array.from({ length: EMAILS }, (_, i) => ({ to: `r${i}@example.com`, template: 'welcome', variables: { user_name: `R${i}`, tenant_name: 'Bench', dashboard_url: 'http://localhost/' } })),
    )
    const provisioned = Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        createTenant({ provisioner: producer.provisioner, tasks: producer.tasks, inline: false, logger: producer.logger }, { slug: `kill-${i}`, name: `Kill ${i}` }),
      ),
    )
    await Promise.all([emails, provisioned])
    await until(() => smtp!.messages.length - before >= EMAILS / 3, 60_000, 'a third of the emails')
    worker.proc.kill('SIGKILL')
    const killedAt = smtp.messages.length - before
    const [running] = await admin<{ n: number }[]>`select count(*)::int as n from sys_jobs where status = 'running'`
    // A job completes before its record's "completed" write lands (src/core/jobs/processor.ts): a kill in those
    // few ms leaves the record running behind BullMQ, for the reconcile sweep to complete; here it looks after
    // 10 s instead of the default 5 min, so "drained" below can count on it.
    worker = startProcess('dist/src/worker.js', { ...workerEnv, JOB_RECONCILE_AFTER_MS: '10000', JOB_RECONCILE_INTERVAL_MS: '2000' }, workerArgs)
    const drained = await until(
      async () => {
        const [row] = await admin<{ open: number }[]>`select count(*)::int as open from sys_jobs where status not in ('completed', 'failed')`
        return row!.open === 0 && smtp!.messages.length - before >= EMAILS
      },
      90_000,
      'jobs drained',
    ).catch(() => false)
    const perRecipient = new Map<string, number>()
    const idsPerRecipient = new Map<string, Set<string>>()
    for (const m of smtp.messages.slice(before))
      for (const to of m.envelope.to) {
        perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1)
        idsPerRecipient.set(to, (idsPerRecipient.get(to) ?? new Set()).add(m.messageId ?? `none-${Math.random()}`))
      }
    const batch = Array.from({ length: EMAILS }, (_, i) => `r${i}@example.com`)
    const jobs = await admin<{ status: string; n: number }[]>`select status, count(*)::int as n from sys_jobs group by status order by status`
    const [tenantsActive] = await admin<{ n: number }[]>`select count(*)::int as n from core_tenants where slug like 'kill-%' and status = 'active'`
    line('worker kill -9: emails delivered before the kill', killedAt)
    line('worker kill -9: jobs recorded running at the kill', running!.n)
    line('worker kill -9: emails lost (never delivered)', batch.filter((to) => !perRecipient.has(to)).length)
    const twice = batch.filter((to) => (perRecipient.get(to) ?? 0) > 1)
    line('worker kill -9: emails delivered twice or more', twice.length)
    // effects.ts: a kill between the SMTP server's 250 and the "done" commit repeats the send once, with the
    // same Message-ID (SMTP's own at-least-once limit); a different Message-ID would be a real re-run.
    line('worker kill -9: of those, repeats with the same Message-ID (kill between SMTP 250 and the done mark)', twice.filter((to) => idsPerRecipient.get(to)!.size === 1).length)
    line('worker kill -9: effects the restarted worker found started and not done (re-sent)', worker.out().split('effect started by an earlier run and not marked done').length - 1)
    const sameId = twice.filter((to) => idsPerRecipient.get(to)!.size === 1).length
    goal(
      batch.every((to) => perRecipient.get(to) === 1),
      `worker kill -9: 0 lost, 0 run twice${sameId ? ` (${sameId} of ${twice.length} repeat(s) with the same Message-ID: the SMTP 250 → done-mark window, src/core/jobs/effects.ts)` : ''}`,
    )
    line('worker kill -9: provisionings active', `${tenantsActive!.n}/20`)
    line('worker kill -9: sys_jobs by status', jobs.map((j) => `${j.status} × ${j.n}`).join(', '))
    line('worker kill -9: drained', drained ? `yes, ${((Date.now() - started) / 1000).toFixed(1)} s after submitting` : 'NO (timed out)')
    goal(!!drained && tenantsActive!.n === 20, 'worker kill -9: every job finished, every provisioning active')
    await producer.close()
    await admin.end()
  }
  line('goals missed', missed.length ? missed.join('; ') : 'none')
  await shutdown()
  process.exit(missed.length ? 2 : 0)
} catch (err) {
  console.error(err)
  await shutdown()
  process.exit(1)
}
