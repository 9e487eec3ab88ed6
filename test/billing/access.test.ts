/**
 * Gating: hasActiveSubscription / requireActiveSubscription (402) / checkFeatureAccess (403) on real
 * subscription rows, and the route guard reading `config.billing` with a tenant set the way the tenancy
 * plugin will (request.tenant).
 */
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkFeatureAccess, hasActiveSubscription, requireActiveSubscription } from '../../src/features/billing/access.js'
import billingGuard from '../../src/features/billing/guard.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { type BillingWorld, bareFastify, insertTenant, startBillingWorld } from './helpers.js'

let env: TestEnv
let w: BillingWorld
const grace = { graceDays: 7 }

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env)
})

afterAll(async () => {
  await w?.close()
  await env?.cleanup()
})

async function subscribe(tenantId: string, status: string, opts: { plan?: string; pastDueDays?: number } = {}) {
  const [plan] = await w.host.sql<{ id: string }[]>`select id from core_pricing_plans where key = ${opts.plan ?? 'pro'}`
  const pastDue = opts.pastDueDays === undefined ? null : new Date(Date.now() - opts.pastDueDays * 86400_000).toISOString()
  await w.host.sql`
    insert into core_subscriptions (id, tenant_id, plan_id, stripe_subscription_id, stripe_customer_id, status, past_due_since, stripe_updated_at)
    values (${uuidv7()}, ${tenantId}, ${plan!.id}, ${`sub_${uuidv7()}`}, 'cus_x', ${status}, ${pastDue}, now())`
}

async function rejection(p: Promise<unknown>) {
  try {
    await p
  } catch (err) {
    return err as { statusCode: number; code: string; details?: Record<string, unknown> }
  }
  throw new Error('expected a rejection')
}

describe('access functions', () => {
  it('a tenant without a subscription: 402 for paid routes, free-plan features only', async () => {
    const t = await insertTenant(w.host, w.config)
    expect(await hasActiveSubscription(w.host, t, grace)).toBe(false)
    expect(await rejection(requireActiveSubscription(w.host, t, grace))).toMatchObject({ statusCode: 402, code: 'SUBSCRIPTION_REQUIRED' })
    await expect(checkFeatureAccess(w.host, t, 'projects', grace)).resolves.toBeUndefined()
    expect(await rejection(checkFeatureAccess(w.host, t, 'exports', grace))).toMatchObject({
      statusCode: 403,
      code: 'FEATURE_NOT_IN_PLAN',
      details: { feature: 'exports', plan: 'free' },
    })
  })

  it('active and trialing count; the plan decides features', async () => {
    for (const status of ['active', 'trialing']) {
      const t = await insertTenant(w.host, w.config)
      await subscribe(t, status)
      expect(await hasActiveSubscription(w.host, t, grace)).toBe(true)
      await expect(requireActiveSubscription(w.host, t, grace)).resolves.toMatchObject({ status, planKey: 'pro' })
      await expect(checkFeatureAccess(w.host, t, 'exports', grace)).resolves.toBeUndefined()
      expect(await rejection(checkFeatureAccess(w.host, t, 'no_such_feature', grace))).toMatchObject({
        statusCode: 403,
        details: { feature: 'no_such_feature', plan: 'pro' },
      })
    }
  })

  it('past_due counts only within the grace period', async () => {
    const recent = await insertTenant(w.host, w.config)
    await subscribe(recent, 'past_due', { pastDueDays: 2 })
    const old = await insertTenant(w.host, w.config)
    await subscribe(old, 'past_due', { pastDueDays: 10 })
    expect(await hasActiveSubscription(w.host, recent, { graceDays: 7 })).toBe(true)
    expect(await hasActiveSubscription(w.host, recent, { graceDays: 0 })).toBe(false)
    expect(await hasActiveSubscription(w.host, old, { graceDays: 7 })).toBe(false)
    expect(await hasActiveSubscription(w.host, old, { graceDays: 30 })).toBe(true)
  })

  it('canceled, incomplete and unpaid do not count; the best live plan wins', async () => {
    const t = await insertTenant(w.host, w.config)
    for (const s of ['canceled', 'incomplete', 'unpaid', 'incomplete_expired']) await subscribe(t, s, { plan: 'enterprise' })
    expect(await hasActiveSubscription(w.host, t, grace)).toBe(false)
    await subscribe(t, 'active', { plan: 'pro' })
    await subscribe(t, 'trialing', { plan: 'enterprise' })
    await expect(requireActiveSubscription(w.host, t, grace)).resolves.toMatchObject({ planKey: 'enterprise' })
    await expect(checkFeatureAccess(w.host, t, 'exports', grace)).resolves.toBeUndefined()
  })
})

describe('route guard', () => {
  it('enforces config.billing per route: 402 / 403 with the feature name / 403 below minTier / pass-through', async () => {
    const free = await insertTenant(w.host, w.config)
    const pro = await insertTenant(w.host, w.config)
    await subscribe(pro, 'active')

    const app = bareFastify()
    // What the tenancy plugin will do: decorate request.tenant and resolve it before handlers.
    app.decorateRequest('tenant', null)
    app.addHook('onRequest', async (req) => {
      const id = req.headers['x-tenant-id']
      ;(req as unknown as { tenant: { id: string } | null }).tenant = typeof id === 'string' ? { id } : null
    })
    await app.register(billingGuard, { host: w.host, graceDays: 7 })
    app.get('/open', async () => ({ ok: true }))
    app.get('/paid', { config: { billing: { subscription: true } } }, async () => ({ ok: true }))
    app.get('/exports', { config: { billing: { feature: 'exports' } } }, async () => ({ ok: true }))
    app.get('/sso', { config: { billing: { subscription: true, feature: 'sso' } } }, async () => ({ ok: true }))
    app.get('/tier2', { config: { billing: { minTier: 2 } } }, async () => ({ ok: true }))
    app.get('/tier1', { config: { billing: { minTier: 1 } } }, async () => ({ ok: true }))
    await app.ready()

    const call = async (url: string, tenant?: string) => {
      const res = await app.inject({ url, headers: tenant ? { 'x-tenant-id': tenant } : {} })
      return { status: res.statusCode, body: res.json() }
    }
    expect(await call('/open', free)).toEqual({ status: 200, body: { ok: true } })
    expect(await call('/open')).toEqual({ status: 200, body: { ok: true } })
    expect(await call('/paid', free)).toMatchObject({ status: 402, body: { code: 'SUBSCRIPTION_REQUIRED' } })
    expect(await call('/paid', pro)).toEqual({ status: 200, body: { ok: true } })
    expect(await call('/exports', free)).toEqual({
      status: 403,
      body: {
        statusCode: 403,
        error: 'Forbidden',
        code: 'FEATURE_NOT_IN_PLAN',
        message: 'Your plan does not include "exports"',
        feature: 'exports',
        plan: 'free',
      },
    })
    expect(await call('/exports', pro)).toEqual({ status: 200, body: { ok: true } })
    expect(await call('/sso', pro)).toMatchObject({ status: 403, body: { feature: 'sso', plan: 'pro' } })
    expect(await call('/tier1', pro)).toEqual({ status: 200, body: { ok: true } })
    expect(await call('/tier1', free)).toMatchObject({ status: 403, body: { code: 'PLAN_TIER_TOO_LOW', minTier: 1, tier: 0, plan: 'free' } })
    expect(await call('/tier2', pro)).toMatchObject({ status: 403, body: { code: 'PLAN_TIER_TOO_LOW', minTier: 2, tier: 1, plan: 'pro' } })
    expect(await call('/paid')).toMatchObject({ status: 404, body: { code: 'TENANT_NOT_FOUND' } })
    await app.close()
  })
})
