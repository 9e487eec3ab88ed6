/**
 * Billing's scheduled jobs, run through the task manager and a real worker against real Postgres and
 * Redis and the fake Stripe server: `billing.reconcile_subscriptions` applies what missed webhooks
 * left behind (and nothing on a second run), and `billing.trim_webhook_ledger` deletes only final
 * ledger rows past retention. When they run is tested in test/jobs/schedules.test.ts.
 */
import { randomBytes } from 'node:crypto'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobContext } from '../../src/core/jobs/registry.js'
import { billingReconcileSubscriptions, type ReconcileDeps } from '../../src/features/billing/reconcile-job.js'
import { createServices, type Services } from '../../src/services.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'
import { settled, silent } from '../jobs/helpers.js'
import { auditActions, type BillingWorld, insertTenant, PRO_MONTHLY, startBillingWorld, subscriptionState } from './helpers.js'

let env: TestEnv
let w: BillingWorld
let services: Services
let worker: WorkerRuntime

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env)
  services = createServices(w.config, silent)
  await services.catalog.ready
  worker = await startWorkers(services, { scopes: ['system'], concurrency: 2, schedules: false })
})
afterAll(async () => {
  await worker?.close(5000)
  await services?.close()
  await w?.close()
  await env?.cleanup()
})

async function run(job: 'billing.reconcile_subscriptions' | 'billing.trim_webhook_ledger') {
  const submitted = await services.tasks.submit(job, {})
  const view = await settled(services.tasks, submitted.id, 'system')
  expect(view.status, view.errorLog ?? '').toBe('completed')
  return view.result
}

/** A tenant with a pro subscription its webhook delivered: the row is in step with Stripe. */
async function subscribedTenant() {
  const tenantId = await insertTenant(w.host, w.config)
  const customer = w.fake.createCustomer({ metadata: { tenant_id: tenantId } })
  await w.host.sql`update core_tenants set stripe_customer_id = ${customer.id} where id = ${tenantId}`
  const sub = w.fake.createSubscription({ customer: customer.id, price: PRO_MONTHLY, metadata: { tenant_id: tenantId } })
  expect((await w.deliver(w.fake.event('customer.subscription.created', sub))).body.status).toBe('processed')
  return { tenantId, subId: sub.id as string }
}

const planTier = async (tenantId: string) => (await w.host.sql`select plan_tier from core_tenants where id = ${tenantId}`)[0]!.plan_tier

describe('billing.reconcile_subscriptions', () => {
  it('applies what missed webhooks left behind, leaves rows in step alone, and changes nothing on a second run', async () => {
    const pastDue = await subscribedTenant()
    const canceled = await subscribedTenant()
    const inStep = await subscribedTenant()
    // A subscription already ended in our table: never asked for again.
    const ended = await subscribedTenant()
    w.fake.now += 60
    w.fake.setSubscription(ended.subId, { status: 'canceled', canceled_at: w.fake.now, ended_at: w.fake.now })
    expect((await w.deliver(w.fake.event('customer.subscription.deleted', w.fake.subscriptions.get(ended.subId)!))).body.status).toBe(
      'processed',
    )
    expect(await planTier(canceled.tenantId)).toBe('pro')

    // Stripe moves on; the webhooks never arrive.
    w.fake.now += 60
    w.fake.setSubscription(pastDue.subId, { status: 'past_due' })
    w.fake.setSubscription(canceled.subId, { status: 'canceled', canceled_at: w.fake.now, ended_at: w.fake.now })
    const endedFetches = w.fake.count('GET', `/v1/subscriptions/${ended.subId}`)

    expect(await run('billing.reconcile_subscriptions')).toEqual({
      checked: 3,
      updated: 2,
      unchanged: 1,
      movedMeanwhile: 0,
      unknownToStripe: 0,
      failed: 0,
    })
    expect(await subscriptionState(w.host, pastDue.subId)).toMatchObject({ status: 'past_due', plan: 'pro' })
    expect(await subscriptionState(w.host, canceled.subId)).toMatchObject({ status: 'canceled' })
    expect(await subscriptionState(w.host, inStep.subId)).toMatchObject({ status: 'active', plan: 'pro' })
    // The canceled tenant is back on the free plan, as the missed customer.subscription.deleted would have left it.
    expect(await planTier(canceled.tenantId)).toBe('free')
    expect(await auditActions(w.host, canceled.tenantId)).toEqual(['billing.subscription.created', 'billing.subscription.canceled'])
    expect(await auditActions(w.host, pastDue.tenantId)).toEqual(['billing.subscription.created', 'billing.subscription.updated'])
    expect(w.fake.count('GET', `/v1/subscriptions/${ended.subId}`)).toBe(endedFetches)

    // Idempotent: the second night finds everything in step.
    expect(await run('billing.reconcile_subscriptions')).toEqual({
      checked: 2,
      updated: 0,
      unchanged: 2,
      movedMeanwhile: 0,
      unknownToStripe: 0,
      failed: 0,
    })
    expect(await auditActions(w.host, pastDue.tenantId)).toEqual(['billing.subscription.created', 'billing.subscription.updated'])
  })

  it('one subscription failing does not stop the rest: unknown to Stripe is logged, Stripe unavailable fails the job for a retry', async () => {
    const missing = await subscribedTenant()
    w.fake.subscriptions.delete(missing.subId)
    const flaky = await subscribedTenant()
    const moved = await subscribedTenant()
    w.fake.setSubscription(moved.subId, { status: 'past_due' })
    // Every try at the flaky one answers 500 (the SDK's own retries included).
    w.fake.fail('GET', new RegExp(`^/v1/subscriptions/${flaky.subId}$`), { status: 500, times: 10 })

    const submitted = await services.tasks.submit('billing.reconcile_subscriptions', {})
    const attempt = await waitFor(
      async () => {
        const v = await services.tasks.getJob(submitted.id, 'system')
        return v.retryCount === 1 && v.errorLog ? v : undefined
      },
      { message: 'the first attempt to fail', timeout: 25_000 },
    )
    expect(attempt.errorLog).toMatch(/reconcile: 1 of \d+ subscriptions could not be retrieved from Stripe/)
    // The others were still reconciled.
    expect(await subscriptionState(w.host, moved.subId)).toMatchObject({ status: 'past_due' })
    expect(await subscriptionState(w.host, missing.subId)).toMatchObject({ status: 'active' })
  }, 40_000)

  it('is skipped without STRIPE_SECRET_KEY', async () => {
    const ctx = { deps: { host: w.host, config: env.config }, logger: silent } as unknown as JobContext<ReconcileDeps>
    expect(await billingReconcileSubscriptions.process(ctx, {})).toEqual({ skipped: 'billing is not configured (STRIPE_SECRET_KEY unset)' })
  })
})

describe('billing.trim_webhook_ledger', () => {
  it('deletes processed and skipped ledger rows past STRIPE_WEBHOOK_RETENTION_DAYS; failed and recent ones stay', async () => {
    const tag = randomBytes(3).toString('hex')
    const row = (label: string, status: string, daysAgo: number) => {
      const at = new Date(Date.now() - daysAgo * 86_400_000).toISOString()
      return w.host.sql`
        insert into core_stripe_webhook_events (id, stripe_event_id, type, status, stripe_created_at, payload, received_at)
        values (${uuidv7()}, ${`evt_${tag}_${label}`}, 'invoice.paid', ${status}, ${at}::timestamptz, '{}'::jsonb, ${at}::timestamptz)`
    }
    await row('processed_old', 'processed', 91)
    await row('skipped_old', 'skipped', 120)
    await row('failed_old', 'failed', 200)
    await row('processed_recent', 'processed', 89)
    const left = async () =>
      (
        await w.host.sql`select stripe_event_id from core_stripe_webhook_events where stripe_event_id like ${`evt_${tag}_%`} order by 1`
      ).map((r) => String(r.stripe_event_id).slice(`evt_${tag}_`.length))

    expect(await run('billing.trim_webhook_ledger')).toEqual({ deleted: 2 })
    expect(await left()).toEqual(['failed_old', 'processed_recent'])
    expect(await run('billing.trim_webhook_ledger')).toEqual({ deleted: 0 })
    expect(await left()).toEqual(['failed_old', 'processed_recent'])
  })
})
