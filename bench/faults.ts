/**
 * Fault bench: the PRODUCTION build (`npm run build`; `node dist/src/server.js` + `node dist/src/worker.js`,
 * NODE_ENV=production) against a Postgres cluster and a Redis instance of its own (test/helpers/scratch-services.ts,
 * free ports, never the shared ones), with an SMTP sink. Scenarios, each printed one figure per line:
 *
 *   1. Postgres stopped 5 s under load       2. Redis stopped (SIGKILL) 5 s under load
 *   3. 1,000 requests aborted while waiting for connection budget (budget 2, 1 per tenant, 5 tenants)
 *   4. worker SIGKILLed mid-batch of provisioning + email jobs, then restarted
 *
 *   npm run bench:faults      (BENCH_SKIP_BUILD=1 reuses dist/; BENCH_LOAD_CONCURRENCY, BENCH_EMAILS, BENCH_TENANTS)
 *
 * Load is loopback only and bounded in count and time: a few sequential loops for a fixed window.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { fileURLToPath } from 'node:url'
import { connect } from '../src/db/connect.js'
import { freePort, type ScratchPostgres, type ScratchRedis, startScratchPostgres, startScratchRedis } from '../test/helpers/scratch-services.js'
import { type SmtpCapture, startSmtpCapture } from '../test/helpers/smtp.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const CONCURRENCY = Number(process.env.BENCH_LOAD_CONCURRENCY ?? 8)
const EMAILS = Number(process.env.BENCH_EMAILS ?? 150)
const TENANTS = Number(process.env.BENCH_TENANTS ?? 5) // a user may own 5 tenants (quota)
const OUTAGE_MS = 5000

const line = (label: string, value: string | number) => console.log(`${label}: ${value}`)
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
  line(`${name}: seconds to first 2xx after recovery`, firstOk ? ((firstOk.end - upAt) / 1000).toFixed(2) : 'none')
}

// ---------------------------------------------------------------------------------------------------
try {
  if (!process.env.BENCH_SKIP_BUILD) {
    const t0 = Date.now()
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8' })
    if (b.status !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`)
    line('build', `${((Date.now() - t0) / 1000).toFixed(1)} s`)
  }
  pg = await startScratchPostgres({ maxConnections: 100 })
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
    // Small on purpose: scenario 3 needs requests waiting for budget.
    POOL_CONNECTION_BUDGET: '2',
    POOL_MAX_PER_TENANT: '1',
    POOL_ACQUIRE_TIMEOUT_MS: '30000',
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
  for (const [name, down, up] of [
    ['postgres stop 5 s', () => pg!.stop('fast'), () => pg!.start()],
    ['redis stop 5 s', () => redis!.kill(), () => redis!.start()],
  ] as const) {
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
  }

  // 3: 1,000 requests aborted while they wait for budget (2 slots, 5 tenants, nobody else using them).
  const metric = async (name: string) => {
    const m = (await send(base, '/metrics', { headers: { authorization: `Bearer ${metricsToken}` } })).body
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m)?.[1] ?? Number.NaN)
  }
  {
    const ac = new AbortController()
    const answers = Array.from({ length: 1000 }, (_, i) =>
      send(base, '/api/projects', { headers: { cookie, 'x-tenant-id': slugs[i % slugs.length]! }, signal: ac.signal }),
    )
    const waiting = await until(async () => {
      const w = await metric('tenant_pool_waiters')
      return w >= 900 && w
    }, 30_000, '1,000 waiters').catch(() => Number.NaN)
    ac.abort()
    const results = await Promise.all(answers)
    const t0 = performance.now()
    await until(async () => (await metric('tenant_pool_waiters')) === 0 && (await metric('tenant_pool_leases')) === 0, 10_000, 'queue empty').catch(() => {})
    line('aborted waiters: requests aborted by the client', results.filter((r) => r.status === 'aborted').length)
    line('aborted waiters: waiting for budget when aborted', waiting)
    line('aborted waiters: seconds until queue empty and no lease held', ((performance.now() - t0) / 1000).toFixed(2))
    line('aborted waiters: leases held afterwards', await metric('tenant_pool_leases'))
    const served = await Promise.all(slugs.map((s) => send(base, '/api/projects', { headers: { cookie, 'x-tenant-id': s } })))
    line('aborted waiters: tenants served afterwards', `${served.filter((r) => r.status === 200).length}/${slugs.length}`)
    line('aborted waiters: budget free afterwards', `${2 - (await metric('tenant_pool_leases'))}/${await metric('tenant_pool_budget')} slots`)
  }

  // 4: worker SIGKILLed mid-batch of email + provisioning jobs, then restarted.
  {
    const admin = connect(hostUrl, { max: 1 })
    const { createServices } = await import('../src/services.js')
    const { loadConfig } = await import('../src/config.js')
    const { pino } = await import('pino')
    const { createTenant } = await import('../src/tenancy/create-tenant.js')
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
    worker = startProcess('dist/src/worker.js', workerEnv, workerArgs)
    const drained = await until(
      async () => {
        const [row] = await admin<{ open: number }[]>`select count(*)::int as open from sys_jobs where status not in ('completed', 'failed')`
        return row!.open === 0 && smtp!.messages.length - before >= EMAILS
      },
      90_000,
      'jobs drained',
    ).catch(() => false)
    const perRecipient = new Map<string, number>()
    for (const m of smtp.messages.slice(before)) for (const to of m.envelope.to) perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1)
    const batch = Array.from({ length: EMAILS }, (_, i) => `r${i}@example.com`)
    const jobs = await admin<{ status: string; n: number }[]>`select status, count(*)::int as n from sys_jobs group by status order by status`
    const [tenantsActive] = await admin<{ n: number }[]>`select count(*)::int as n from core_tenants where slug like 'kill-%' and status = 'active'`
    line('worker kill -9: emails delivered before the kill', killedAt)
    line('worker kill -9: emails lost (never delivered)', batch.filter((to) => !perRecipient.has(to)).length)
    line('worker kill -9: emails delivered twice or more', batch.filter((to) => (perRecipient.get(to) ?? 0) > 1).length)
    line('worker kill -9: provisionings active', `${tenantsActive!.n}/20`)
    line('worker kill -9: sys_jobs by status', jobs.map((j) => `${j.status} × ${j.n}`).join(', '))
    line('worker kill -9: drained', drained ? `yes, ${((Date.now() - started) / 1000).toFixed(1)} s after submitting` : 'NO (timed out)')
    await producer.close()
    await admin.end()
  }
  await shutdown()
  process.exit(0)
} catch (err) {
  console.error(err)
  await shutdown()
  process.exit(1)
}
