/**
 * Stripe webhook ingest: signed `customer.subscription.updated` events (≈4 KB, the fixture's shape), 30 %
 * of them redeliveries of recent events, through the real POST /webhooks/stripe route (verify, ledger,
 * ordered upsert, audit row, the effects job written to the outbox and submitted after commit for the events
 * that have one (a subscription's first event), one transaction) against a bare Fastify handler doing the same
 * constructEvent + one transaction (ledger insert, watermark upsert), measured alternately in one run.
 * Each server runs in its own child process (this file with `--serve`) on its own host database;
 * autocannon signs every request here, so signatures stay fresh however long the run.
 *
 *   npx tsx bench/webhooks.ts     (BENCH_DURATION_S per round, default 15; BENCH_ROUNDS, default 2; BENCH_CONNECTIONS, default 50)
 *
 * Prints events/s and p99 for both, the outcome mix, and the ratio route/bare (goal ≥ 0.7).
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import Stripe from 'stripe'
import { uuidv7 } from 'uuidv7'

const SECRET = 'whsec_bench_0123456789abcdef0123456789abcdef'
const PRICE = 'price_1QkT0aJx4nB2cD3eProMonth'
const TENANTS = 20
const SUBSCRIPTIONS = 2000
const DUPLICATE_SHARE = 0.3

// ---------------------------------------------------------------------------------------------------
// Child: one server, `--serve route|bare`, host database from DATABASE_URL. Prints {"port"} then serves;
// on stdin "stats" prints the outcome counts.
// ---------------------------------------------------------------------------------------------------
async function serve(mode: 'route' | 'bare') {
  const { loadConfig } = await import('../src/core/config.js')
  const { createHostDatabase } = await import('../src/core/db/host.js')
  const config = loadConfig(process.env)
  const host = createHostDatabase(config.databaseUrl!, config.pool.hostMax)
  const app = Fastify({ logger: false })
  const outcomes: Record<string, number> = {}
  const closers: (() => Promise<void>)[] = []
  app.addHook('onSend', async (_req, reply, payload) => {
    const status =
      typeof payload === 'string' ? (/"status":"(\w+)"/.exec(payload)?.[1] ?? `http_${reply.statusCode}`) : `http_${reply.statusCode}`
    outcomes[status] = (outcomes[status] ?? 0) + 1
    return payload
  })

  if (mode === 'route') {
    const { toErrorBody } = await import('../src/core/plugins/errors.js')
    const { createStripe } = await import('../src/features/billing/stripe.js')
    const routes = (await import('../src/features/billing/routes/stripe-webhook.js')).default
    // The route's documented errors refer to the shared Error schema, which the app registers at boot.
    const { ErrorSchema } = await import('../src/core/lib/schemas.js')
    app.addSchema(ErrorSchema)
    app.setErrorHandler((err, _req, reply) => {
      const body = toErrorBody(err as Error & { statusCode?: number })
      return reply.code(body.statusCode).send(body)
    })
    // The app's wiring of the follow-up jobs: outbox row in the event's transaction, submitted to the queue after commit.
    const { createServices } = await import('../src/services.js')
    const { pino } = await import('pino')
    const services = createServices(config, pino({ level: 'silent' }), { host })
    closers.push(() => services.close())
    await app.register(routes, {
      prefix: '/webhooks',
      config,
      host,
      stripe: createStripe(config.stripe, { maxNetworkRetries: 0 }),
      followUps: { outbox: services.outbox },
    })
  } else {
    const stripe = new Stripe('sk_test_bench')
    const sql = host.sql
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
    app.post('/webhooks/stripe', async (req, reply) => {
      let event: Stripe.Event
      try {
        event = stripe.webhooks.constructEvent(req.body as Buffer, String(req.headers['stripe-signature']), SECRET)
      } catch {
        return reply.code(400).send({ code: 'INVALID_SIGNATURE' })
      }
      const raw = (req.body as Buffer).toString('utf8')
      const sub = event.data.object as Stripe.Subscription
      const at = new Date(event.created * 1000).toISOString()
      const status = await sql.begin(async (tx) => {
        const fresh = await tx`
          insert into core_stripe_webhook_events (id, stripe_event_id, type, status, api_version, stripe_created_at, payload, processed_at)
          values (${uuidv7()}, ${event.id}, ${event.type}, 'processed', ${event.api_version}, ${at}, ${raw}::jsonb, now())
          on conflict (stripe_event_id) do nothing returning id`
        if (fresh.length === 0) return 'duplicate'
        await tx`
          insert into core_subscriptions (id, tenant_id, stripe_subscription_id, stripe_customer_id, stripe_price_id, status, cancel_at_period_end, stripe_updated_at)
          values (${uuidv7()}, ${sub.metadata.tenant_id!}, ${sub.id}, ${String(sub.customer)}, ${sub.items.data[0]!.price.id}, ${sub.status},
                  ${sub.cancel_at_period_end}, ${at})
          on conflict (stripe_subscription_id) do update set status = excluded.status, cancel_at_period_end = excluded.cancel_at_period_end,
            stripe_updated_at = excluded.stripe_updated_at
          where core_subscriptions.stripe_updated_at < excluded.stripe_updated_at`
        return 'processed'
      })
      return { received: true, status }
    })
  }

  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  process.stdout.write(`${JSON.stringify({ port: Number(new URL(address).port) })}\n`)
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'stats') process.stdout.write(`${JSON.stringify(outcomes)}\n`)
  })
  process.once('SIGTERM', async () => {
    await app.close()
    for (const close of closers) await close()
    await host.close()
    process.exit(0)
  })
}

// ---------------------------------------------------------------------------------------------------
// Parent: databases, event stream, autocannon rounds, figures.
// ---------------------------------------------------------------------------------------------------
interface CannonRequest {
  method?: string
  path?: string
  headers?: Record<string, string>
  body?: string
  setupRequest?: (req: CannonRequest) => CannonRequest
}
interface CannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number }
  errors: number
  timeouts: number
  non2xx: number
}
// autocannon ships no types: the slice used here.
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: {
  url: string
  connections: number
  duration: number
  requests: CannonRequest[]
}) => Promise<CannonResult>

/** An endless stream of signed-at-send-time events: new ones advance each subscription's clock; 30 % repeat a recent one. */
function eventStream(tenantIds: string[]) {
  const template = JSON.parse(
    readFileSync(new URL('../test/fixtures/stripe/customer.subscription.updated.active.json', import.meta.url), 'utf8'),
  )
  const recent: string[] = []
  const base = Math.floor(Date.now() / 1000)
  let seq = 0
  const fresh = (): string => {
    seq++
    const n = seq % SUBSCRIPTIONS
    const ev = structuredClone(template)
    ev.id = `evt_bench${process.pid}x${seq}`
    ev.created = base + seq // strictly increasing: every new event is newer than what its subscription holds
    const sub = ev.data.object
    sub.id = `sub_bench${n}`
    sub.customer = `cus_bench${n}`
    sub.metadata.tenant_id = tenantIds[n % tenantIds.length]
    sub.items.data[0].price.id = PRICE
    sub.cancel_at_period_end = seq % 2 === 0 // a real change each time
    return JSON.stringify(ev)
  }
  return () => {
    let body: string
    if (recent.length > 0 && Math.random() < DUPLICATE_SHARE) body = recent[Math.floor(Math.random() * recent.length)]!
    else {
      body = fresh()
      recent.push(body)
      if (recent.length > 500) recent.shift()
    }
    return { body, signature: Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) }
  }
}

async function main() {
  const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 15)
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
  const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
  const { default: setup } = await import('../test/global-setup.js')
  const { createTestEnv } = await import('../test/helpers/test-env.js')
  const { createHostDatabase } = await import('../src/core/db/host.js')
  const { encrypt } = await import('../src/core/lib/crypto.js')
  const { seedPlansFromFile } = await import('../src/features/billing/plans.js')
  await setup()

  const stripeVars = {
    STRIPE_SECRET_KEY: 'sk_test_bench',
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_API_HOST: 'http://127.0.0.1:9',
    LOG_LEVEL: 'silent',
  }
  const envs = { route: await createTestEnv(stripeVars), bare: await createTestEnv(stripeVars) }
  const children: ReturnType<typeof spawn>[] = []
  try {
    const tenantIds: string[] = Array.from({ length: TENANTS }, () => uuidv7())
    for (const env of Object.values(envs)) {
      const host = createHostDatabase(env.hostUrl, 2)
      for (const [i, id] of tenantIds.entries()) {
        await host.sql`insert into core_tenants (id, slug, name, db_name, db_url_encrypted, status)
          values (${id}, ${`bench-${i}`}, ${`Bench ${i}`}, ${`bench_${i}`}, ${encrypt('postgres://x@127.0.0.1/x', env.config.encryptionKeys)}, 'active')`
      }
      await seedPlansFromFile(host.db, fileURLToPath(new URL('../config/plans.json', import.meta.url)), { STRIPE_MONTHLY_PRICE_ID: PRICE })
      await host.close()
    }

    const start = async (mode: 'route' | 'bare') => {
      const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', mode], {
        env: { ...process.env, ...envs[mode].vars },
        stdio: ['pipe', 'pipe', 'inherit'],
      })
      children.push(child)
      const lines = createInterface({ input: child.stdout! })
      const next = () => new Promise<string>((resolve) => lines.once('line', resolve))
      const { port } = JSON.parse(await next()) as { port: number }
      return {
        port,
        stats: async () => {
          child.stdin!.write('stats\n')
          return JSON.parse(await next()) as Record<string, number>
        },
      }
    }
    const servers = { route: await start('route'), bare: await start('bare') }
    const streams = { route: eventStream(tenantIds), bare: eventStream(tenantIds) }

    const run = (mode: 'route' | 'bare', duration: number) => {
      const stream = streams[mode]
      return autocannon({
        url: `http://127.0.0.1:${servers[mode].port}`,
        connections: CONNECTIONS,
        duration,
        requests: [
          {
            method: 'POST',
            path: '/webhooks/stripe',
            setupRequest: (req) => {
              const { body, signature } = stream()
              return { ...req, body, headers: { 'content-type': 'application/json', 'stripe-signature': signature } }
            },
          },
        ],
      })
    }

    // Warm both (JIT, pools, prepared statements, first insert of every subscription).
    await run('bare', 5)
    await run('route', 5)
    const results: Record<'route' | 'bare', CannonResult[]> = { route: [], bare: [] }
    for (let round = 0; round < ROUNDS; round++) {
      results.bare.push(await run('bare', DURATION_S))
      results.route.push(await run('route', DURATION_S))
    }
    const mean = (rs: CannonResult[], f: (r: CannonResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length
    const rps = (rs: CannonResult[]) => mean(rs, (r) => r.requests.average)
    const bad = (rs: CannonResult[]) => rs.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0)
    const mix = (o: Record<string, number>) =>
      Object.entries(o)
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')
    console.log(`bare fastify verify + 1 transaction events/s: ${rps(results.bare).toFixed(0)}`)
    console.log(`bare p99 ms: ${mean(results.bare, (r) => r.latency.p99).toFixed(1)}`)
    console.log(`route POST /webhooks/stripe events/s: ${rps(results.route).toFixed(0)}`)
    console.log(`route p99 ms: ${mean(results.route, (r) => r.latency.p99).toFixed(1)}`)
    console.log(`ratio route/bare: ${(rps(results.route) / rps(results.bare)).toFixed(2)}`)
    console.log(`outcomes bare (incl. warm-up): ${mix(await servers.bare.stats())}`)
    console.log(`outcomes route (incl. warm-up): ${mix(await servers.route.stats())}`)
    const routeHost = createHostDatabase(envs.route.hostUrl, 1)
    const [owed] = await routeHost.sql<{ rows: number; dispatched: number }[]>`
      select count(*)::int as rows, count(dispatched_at)::int as dispatched from core_outbox`
    await routeHost.close()
    console.log(`route outbox rows written, dispatched: ${owed!.rows}, ${owed!.dispatched}`)
    console.log(`errors or non-2xx (route, bare): ${bad(results.route)}, ${bad(results.bare)}`)
  } finally {
    for (const child of children) {
      child.kill('SIGTERM')
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r))
    }
    await envs.route.cleanup()
    await envs.bare.cleanup()
  }
}

if (process.argv[2] === '--serve') await serve(process.argv[3] === 'bare' ? 'bare' : 'route')
else await main()
