/**
 * Deleting a tenant stops its billing (lifecycle step cancelBilling), through the real provisioner and
 * lifecycle runner, the real SDK and the fake Stripe: soft and hard delete cancel the live subscription
 * at once before anything else, re-runs call Stripe no more, a subscription Stripe already ended or
 * doesn't know counts as done, a Stripe outage fails the delete (tenant untouched, retryable), and
 * without billing configured the step is skipped.
 */
import { pino } from 'pino'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { seedPlansFromFile } from '../../src/features/billing/plans.js'
import { createStripeService, type StripeService } from '../../src/features/billing/service.js'
import type { Config } from '../../src/core/config.js'
import { createServices, type Services } from '../../src/services.js'
import { type FakeStripe, startFakeStripe } from '../helpers/fake-stripe.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { ENT_MONTHLY, insertUser, PRO_MONTHLY, PRO_YEARLY, WEBHOOK_SECRET } from './helpers.js'

let env: TestEnv
let fake: FakeStripe
let config: Config
let services: Services
let svc: StripeService

beforeAll(async () => {
  env = await createTestEnv()
  fake = await startFakeStripe()
  fake.addPrice({ id: PRO_MONTHLY, unitAmount: 2900, interval: 'month' })
  fake.addPrice({ id: PRO_YEARLY, unitAmount: 29000, interval: 'year' })
  fake.addPrice({ id: ENT_MONTHLY, unitAmount: 9900, interval: 'month' })
  config = env.configWith({ STRIPE_SECRET_KEY: 'sk_test_deletion', STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_API_HOST: fake.url })
  services = createServices(config, pino({ level: 'silent' }))
  await seedPlansFromFile(services.host.db, new URL('../../config/plans.json', import.meta.url).pathname, {
    STRIPE_MONTHLY_PRICE_ID: PRO_MONTHLY,
    STRIPE_YEARLY_PRICE_ID: PRO_YEARLY,
    STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: ENT_MONTHLY,
  })
  const stripe = new Stripe('sk_test_deletion', { host: '127.0.0.1', port: new URL(fake.url).port, protocol: 'http', maxNetworkRetries: 0 })
  svc = createStripeService({ config, host: services.host, stripe })
}, 30_000)

afterAll(async () => {
  await services?.close()
  await fake?.close()
  await env?.cleanup()
})

let seq = 0
/** A provisioned tenant with a subscription checked out, paid and activated. */
async function subscribedTenant(s: Services = services) {
  const tenant = await s.provisioner.provision({ slug: `paying-${Date.now().toString(36)}${seq++}`, name: 'Paying' })
  const user = await insertUser(s.host)
  const checkout = await svc.createSubscriptionCheckout({ tenantId: tenant.id, user, planKey: 'pro', interval: 'month' })
  const subscriptionId = fake.completeCheckout(checkout.id).subscription!.id as string
  await svc.activateFromCheckoutSession(checkout.id, { tenantId: tenant.id })
  return { tenant, subscriptionId }
}

const cancels = (subscriptionId: string) => fake.count('DELETE', `/v1/subscriptions/${subscriptionId}`)

async function local(tenantId: string, subscriptionId: string) {
  const [row] = await services.host.sql<{ status: string; plan_tier: string }[]>`
    select s.status, t.plan_tier from core_subscriptions s join core_tenants t on t.id = s.tenant_id
    where s.stripe_subscription_id = ${subscriptionId} and t.id = ${tenantId}`
  return row
}

describe('deleting a tenant cancels its billing', () => {
  it('soft delete cancels the live subscription at once (Stripe and our row); a later hard delete calls Stripe no more', async () => {
    const { tenant, subscriptionId } = await subscribedTenant()
    expect(await local(tenant.id, subscriptionId)).toEqual({ status: 'trialing', plan_tier: 'pro' })

    await services.provisioner.run('softDeleted', tenant.id)
    expect(cancels(subscriptionId)).toBe(1)
    expect(fake.subscriptions.get(subscriptionId)).toMatchObject({ status: 'canceled', ended_at: expect.any(Number) })
    expect(await local(tenant.id, subscriptionId)).toEqual({ status: 'canceled', plan_tier: 'free' })
    const [audit] = await services.host.sql<{ metadata: { reason: string } }[]>`
      select metadata from sys_audit_logs where tenant_id = ${tenant.id} and action = 'billing.subscription.canceled'`
    expect(audit!.metadata.reason).toBe('tenant deleted')

    await services.provisioner.run('hardDeleted', tenant.id)
    expect(cancels(subscriptionId)).toBe(1)
    expect(await services.host.sql`select 1 from core_tenants where id = ${tenant.id}`).toHaveLength(0)
  })

  it('hard delete of an active tenant cancels before dropping anything', async () => {
    const { tenant, subscriptionId } = await subscribedTenant()
    await services.provisioner.run('hardDeleted', tenant.id)
    expect(cancels(subscriptionId)).toBe(1)
    expect(fake.subscriptions.get(subscriptionId)!.status).toBe('canceled')
  })

  it('a subscription Stripe already ended, or no longer knows, counts as canceled', async () => {
    const ended = await subscribedTenant()
    fake.setSubscription(ended.subscriptionId, { status: 'canceled', canceled_at: fake.now })
    // Stripe refuses to cancel it again: its current copy decides.
    fake.fail('DELETE', new RegExp(`/v1/subscriptions/${ended.subscriptionId}$`), { status: 400, type: 'invalid_request_error' })
    await services.provisioner.run('softDeleted', ended.tenant.id)
    expect(await local(ended.tenant.id, ended.subscriptionId)).toEqual({ status: 'canceled', plan_tier: 'free' })

    const gone = await subscribedTenant()
    fake.subscriptions.delete(gone.subscriptionId)
    await services.provisioner.run('softDeleted', gone.tenant.id)
    expect(await local(gone.tenant.id, gone.subscriptionId)).toEqual({ status: 'canceled', plan_tier: 'free' })
  })

  it('Stripe down: the delete fails before marking the tenant deleted, and succeeds when run again', async () => {
    const { tenant, subscriptionId } = await subscribedTenant()
    fake.fail('DELETE', new RegExp(`/v1/subscriptions/${subscriptionId}$`), { status: 500, times: 3 })
    await expect(services.provisioner.run('softDeleted', tenant.id)).rejects.toThrow()
    expect((await services.provisioner.describe(tenant.id)).status).toBe('active')
    expect(fake.subscriptions.get(subscriptionId)!.status).toBe('trialing')

    await services.provisioner.run('softDeleted', tenant.id)
    expect((await services.provisioner.describe(tenant.id)).status).toBe('deleted')
    expect(fake.subscriptions.get(subscriptionId)!.status).toBe('canceled')
  })

  it('without billing configured the step is skipped, not failed', async () => {
    const { tenant, subscriptionId } = await subscribedTenant()
    const off = createServices(env.config, pino({ level: 'silent' }))
    try {
      await off.provisioner.run('softDeleted', tenant.id)
    } finally {
      await off.close()
    }
    expect((await services.provisioner.describe(tenant.id)).status).toBe('deleted')
    expect(cancels(subscriptionId)).toBe(0)
    expect(await local(tenant.id, subscriptionId)).toEqual({ status: 'trialing', plan_tier: 'pro' })
  })
})
