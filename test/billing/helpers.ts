/**
 * Billing test world: a real host database (createTestEnv), the fake Stripe server, a real `stripe`
 * client pointed at it, the webhook route on a bare Fastify with the app's error handler, and fixture
 * events re-targeted at fresh ids so many scenarios share one database.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import Fastify, { type FastifyInstance } from 'fastify'
import Stripe from 'stripe'
import { uuidv7 } from 'uuidv7'
import type { BillingEvent, WebhookDeps } from '../../src/features/billing/webhooks.js'
import { asDate } from '../../src/features/billing/audit.js'
import { createStripe } from '../../src/features/billing/stripe.js'
import { seedPlansFromFile } from '../../src/features/billing/plans.js'
import type { Config } from '../../src/core/config.js'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import { encrypt } from '../../src/core/lib/crypto.js'
import { documentRoute } from '../../src/core/lib/openapi.js'
import { ErrorSchema } from '../../src/core/lib/schemas.js'
import { toErrorBody } from '../../src/core/plugins/errors.js'
import stripeWebhookRoutes from '../../src/features/billing/routes/stripe-webhook.js'
import { installContractCheck } from '../helpers/contract.js'
import { type FakeStripe, startFakeStripe, type StripeObject } from '../helpers/fake-stripe.js'
import type { TestEnv } from '../helpers/test-env.js'

export const WEBHOOK_SECRET = 'whsec_test_5f3c1d2e9a8b7c6d5e4f3a2b1c0d9e8f'
export const PRO_MONTHLY = 'price_1QkT0aJx4nB2cD3eProMonth'
export const PRO_YEARLY = 'price_1QkT0bJx4nB2cD3eProYearly'
export const ENT_MONTHLY = 'price_1QkT0cJx4nB2cD3eEntMonth'
/** A one-time price the kit sells (STRIPE_ONE_TIME_PRICES). */
export const SEAT_PACK = 'price_1QkT0dJx4nB2cD3eSeatPack'
/** A one-time price Stripe knows but the kit does not sell. */
export const NOT_FOR_SALE = 'price_1QkT0fJx4nB2cD3eNotForSale'

/** The ids the fixtures in test/fixtures/stripe were recorded with. */
export const FIXTURE = {
  tenantId: '0193a5b2-7c1e-7d4a-9f3e-2b8c4d6e8f10',
  userId: '0193a5b2-6a00-7b11-8c22-3d4e5f607182',
  customerId: 'cus_RfXk2mZpQ7cL9a',
  subscriptionId: 'sub_1QkT8vJx4nB2cD3eF5gH6iJ7',
  checkoutSessionId: 'cs_test_a1Kq9ZmX3vB7nT2cL8pR4sW6yD0fH5jG1uE3iO7aQ9wZ2xC4vB6nM8',
} as const

export const LIFECYCLE = [
  'customer.subscription.created',
  'customer.subscription.updated.active',
  'invoice.payment_failed',
  'invoice.paid',
  'customer.subscription.updated.cancel_at_period_end',
  'customer.subscription.deleted',
] as const

export interface Ids {
  tenantId: string
  userId: string
  customerId: string
  subscriptionId: string
  /** Appended to every evt_ id, so the same fixture is a new event in each scenario. */
  eventSuffix: string
}

export function freshIds(tenantId: string, userId: string): Ids {
  const tag = randomBytes(5).toString('hex')
  return { tenantId, userId, customerId: `cus_T${tag}`, subscriptionId: `sub_T${tag}`, eventSuffix: tag }
}

/** A fixture event with its ids replaced by this scenario's. */
export function fixture(name: string, ids: Ids): StripeObject {
  let text = readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), 'utf8')
  text = text
    .replaceAll(FIXTURE.tenantId, ids.tenantId)
    .replaceAll(FIXTURE.userId, ids.userId)
    .replaceAll(FIXTURE.customerId, ids.customerId)
    .replaceAll(FIXTURE.subscriptionId, ids.subscriptionId)
    .replace(/"(evt_[A-Za-z0-9]+)"/g, `"$1${ids.eventSuffix}"`)
  return JSON.parse(text)
}

export interface BillingWorld {
  env: TestEnv
  host: HostDatabase
  fake: FakeStripe
  config: Config
  stripe: Stripe
  app: FastifyInstance
  /** Every event handed to onBillingEvent. */
  hookCalls: BillingEvent[]
  deliver(
    event: StripeObject,
    opts?: { signature?: string | null; body?: string },
  ): Promise<{ statusCode: number; body: Record<string, unknown> }>
  close(): Promise<void>
}

export async function insertTenant(host: HostDatabase, config: Config, opts: { id?: string; slug?: string } = {}): Promise<string> {
  const id = opts.id ?? uuidv7()
  const slug = opts.slug ?? `t-${randomBytes(4).toString('hex')}`
  await host.sql`
    insert into core_tenants (id, slug, name, db_name, db_url_encrypted, status)
    values (${id}, ${slug}, ${`Tenant ${slug}`}, ${`tk_${slug.replace(/-/g, '_')}`}, ${encrypt('postgres://u:p@127.0.0.1/x', config.encryptionKeys)}, 'active')`
  return id
}

export async function insertUser(
  host: HostDatabase,
  email = `u-${randomBytes(4).toString('hex')}@example.test`,
): Promise<{ id: string; email: string }> {
  const id = uuidv7()
  await host.sql`insert into core_users (id, email, name) values (${id}, ${email}, 'Test User')`
  return { id, email }
}

export function sign(payload: string, secret = WEBHOOK_SECRET): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret })
}

/**
 * A bare Fastify with the app's error handler, shared Error schema and documented errors (what the
 * webhook route needs and nothing else), and the response contract check of test apps.
 */
export function bareFastify(): FastifyInstance {
  const level = process.env.TEST_LOG_LEVEL
  const app = Fastify({ logger: level && level !== 'silent' ? { level } : false })
  app.addSchema(ErrorSchema)
  app.addHook('onRoute', (route) => documentRoute(route))
  installContractCheck(app)
  app.setErrorHandler((err, req, reply) => {
    const body = toErrorBody(err as Error & { statusCode?: number })
    if (body.statusCode >= 500) req.log.error({ err }, 'request failed')
    return reply.code(body.statusCode).send(body)
  })
  return app
}

export async function startBillingWorld(
  env: TestEnv,
  opts: {
    stripeEnabled?: boolean
    hook?: (e: BillingEvent) => Promise<void>
    /** Where follow-up jobs go (none by default). */
    followUps?: WebhookDeps['followUps']
    /** A handler table other than the kit's (the README recipe's test). */
    handlers?: WebhookDeps['handlers']
  } = {},
): Promise<BillingWorld> {
  const host = createHostDatabase(env.hostUrl, 5)
  const fake = await startFakeStripe()
  fake.addPrice({ id: PRO_MONTHLY, unitAmount: 2900, interval: 'month' })
  fake.addPrice({ id: PRO_YEARLY, unitAmount: 29000, interval: 'year' })
  fake.addPrice({ id: ENT_MONTHLY, unitAmount: 9900, interval: 'month' })
  fake.addPrice({ id: SEAT_PACK, unitAmount: 1500, interval: null })
  fake.addPrice({ id: NOT_FOR_SALE, unitAmount: 100, interval: null })
  const enabled = opts.stripeEnabled ?? true
  const config = enabled
    ? env.configWith({
        STRIPE_SECRET_KEY: 'sk_test_fake123',
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_HOST: fake.url,
        STRIPE_ONE_TIME_PRICES: SEAT_PACK,
      })
    : env.config
  const seedEnv = {
    STRIPE_MONTHLY_PRICE_ID: PRO_MONTHLY,
    STRIPE_YEARLY_PRICE_ID: PRO_YEARLY,
    STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: ENT_MONTHLY,
  }
  await seedPlansFromFile(host.db, new URL('../../config/plans.json', import.meta.url).pathname, seedEnv)
  const stripe = new Stripe('sk_test_fake123', { host: '127.0.0.1', port: new URL(fake.url).port, protocol: 'http', maxNetworkRetries: 0 })
  const hookCalls: BillingEvent[] = []
  const app = bareFastify()
  await app.register(stripeWebhookRoutes, {
    prefix: '/webhooks',
    config,
    host,
    stripe: config.stripe ? createStripe(config.stripe, { maxNetworkRetries: 0 }) : undefined,
    onBillingEvent:
      opts.hook ??
      (async (e) => {
        hookCalls.push(e)
      }),
    followUps: opts.followUps,
    handlers: opts.handlers,
  })
  await app.ready()

  return {
    env,
    host,
    fake,
    config,
    stripe,
    app,
    hookCalls,
    async deliver(event, o = {}) {
      const body = o.body ?? JSON.stringify(event)
      const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
      if (o.signature !== null) headers['stripe-signature'] = o.signature ?? sign(body)
      const res = await app.inject({ method: 'POST', url: '/webhooks/stripe', headers, payload: body })
      return { statusCode: res.statusCode, body: res.json() }
    },
    async close() {
      await app.close()
      await fake.close()
      await host.close()
    },
  }
}

/** The fields of a subscription row that define its state (ids and bookkeeping timestamps left out). */
export async function subscriptionState(host: HostDatabase, stripeSubscriptionId: string) {
  const [row] = await host.sql`
    select s.status, p.key as plan, s.stripe_price_id, s.billing_interval, s.current_period_start, s.current_period_end, s.trial_end,
           s.cancel_at_period_end, s.canceled_at, s.past_due_since, s.stripe_updated_at, s.stripe_customer_id
    from core_subscriptions s left join core_pricing_plans p on p.id = s.plan_id
    where s.stripe_subscription_id = ${stripeSubscriptionId}`
  if (!row) return undefined
  const dates = ['current_period_start', 'current_period_end', 'trial_end', 'canceled_at', 'past_due_since', 'stripe_updated_at']
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, dates.includes(k) ? asDate(v) : v]))
}

export async function ledger(host: HostDatabase, eventId: string) {
  return host.sql`select status, error, type from core_stripe_webhook_events where stripe_event_id = ${eventId}`
}

export async function auditActions(host: HostDatabase, tenantId: string): Promise<string[]> {
  const rows = await host.sql<{ action: string }[]>`select action from sys_audit_logs where tenant_id = ${tenantId} order by id`
  return rows.map((r) => r.action)
}
