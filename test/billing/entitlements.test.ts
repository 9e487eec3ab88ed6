/**
 * Entitlements (src/features/billing/entitlements.ts): the plan a tenant has — its subscription's, else
 * an admin's comp until it expires, else the free plan — cached per process and dropped in every
 * process when it changes; and the admin route that comps a plan (POST /admin/api/tenants/:id/plan).
 */
import { eq } from 'drizzle-orm'
import pino from 'pino'
import { uuidv7 } from 'uuidv7'
import { beforeAll, describe, expect, it } from 'vitest'
import { pricingPlans, tenants } from '../../drizzle/host/schema.js'
import { createInvalidationBus } from '../../src/core/lib/invalidated-cache.js'
import { createEntitlementsCache } from '../../src/features/billing/entitlements.js'
import { seedPlansFromFile } from '../../src/features/billing/plans.js'
import { auditRows, platformAdmin, UA, ua } from '../admin/helpers.js'
import { type Member, newMember, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const ctx = useApp()
let ops: Member
let plain: Member
let t: TenantFixture

beforeAll(async () => {
  await seedPlansFromFile(ctx.app.host.db, 'config/plans.json', {})
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  t = await tenantWith(ctx.app)
})

const comp = (m: Member, tenantId: string, body: unknown) => m.c.post(`/admin/api/tenants/${tenantId}/plan`, body, ua)

async function subscribe(tenantId: string, planKey: string) {
  const [plan] = await ctx.app.host.db.select({ id: pricingPlans.id }).from(pricingPlans).where(eq(pricingPlans.key, planKey))
  await ctx.app.host.sql`
    insert into core_subscriptions (id, tenant_id, plan_id, stripe_subscription_id, stripe_customer_id, status, stripe_updated_at)
    values (${uuidv7()}, ${tenantId}, ${plan!.id}, ${`sub_${uuidv7()}`}, 'cus_x', 'active', now())`
}

describe('entitlements', () => {
  it('a tenant with neither subscription nor comp has the free plan, its features and limits', async () => {
    const e = await ctx.app.entitlements.get(t.id)
    expect(e).toMatchObject({ source: 'free', planKey: 'free', tierLevel: 0, features: ['projects', 'members', 'api_access'] })
    expect(e.limits).toEqual({ members: 3, projects: 10, apiKeys: 2, requestsPerMinute: 600, storageMb: 100, realtimeConnections: 25 })
  })

  it('a comp applies at once in every process; a subscription outranks it; withdrawing it falls back', async () => {
    const other = await tenantWith(ctx.app)
    // Another process' cache: its own subscriber connection on the same channel.
    const bus = createInvalidationBus(ctx.app.redis, pino({ level: 'silent' }))
    const elsewhere = createEntitlementsCache({ host: ctx.app.host, bus, channel: `${ctx.env.config.redisPrefix}:entitlements`, ttlS: 3600, graceDays: 7 })
    await elsewhere.ready
    try {
      expect((await elsewhere.get(other.id)).source).toBe('free')
      const res = await comp(ops, other.id, { planKey: 'enterprise' })
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json()).toEqual({
        tenantId: other.id,
        compPlanKey: 'enterprise',
        compExpiresAt: null,
        entitlements: {
          source: 'comp',
          planKey: 'enterprise',
          tierLevel: 2,
          features: ['projects', 'members', 'api_access', 'exports', 'audit_log_export', 'webhooks'],
          limits: { members: null, projects: null, apiKeys: null, requestsPerMinute: 12000, storageMb: null, realtimeConnections: null },
          compExpiresAt: null,
        },
      })
      await waitFor(async () => (await elsewhere.get(other.id)).source === 'comp', { message: 'the other process drops its copy' })
      const [row] = await auditRows(ctx.app, 'admin.tenant_plan_comped', other.id)
      expect(row).toMatchObject({ actorUserId: ops.id, tenantId: other.id, userAgent: UA, metadata: { planKey: 'enterprise', expiresAt: null } })

      await subscribe(other.id, 'pro')
      await ctx.app.entitlements.invalidate(other.id) // what the webhook's onBillingEvent does
      expect(await ctx.app.entitlements.get(other.id)).toMatchObject({ source: 'subscription', planKey: 'pro' })
      await waitFor(async () => (await elsewhere.get(other.id)).source === 'subscription')
      await ctx.app.host.sql`update core_subscriptions set status = 'canceled' where tenant_id = ${other.id}`
      await ctx.app.entitlements.invalidate(other.id)
      expect(await ctx.app.entitlements.get(other.id)).toMatchObject({ source: 'comp', planKey: 'enterprise' })

      expect((await comp(ops, other.id, { planKey: null })).json()).toMatchObject({ compPlanKey: null, entitlements: { source: 'free' } })
      expect(await auditRows(ctx.app, 'admin.tenant_comp_withdrawn', other.id)).toHaveLength(1)
      await waitFor(async () => (await elsewhere.get(other.id)).source === 'free')
    } finally {
      await elsewhere.close()
      await bus.close()
    }
  })

  it('a catalog invalidation (what the worker’s reconcile sends after applying a subscription) drops them too', async () => {
    const other = await tenantWith(ctx.app)
    expect((await ctx.app.entitlements.get(other.id)).source).toBe('free')
    await subscribe(other.id, 'pro')
    expect((await ctx.app.entitlements.get(other.id)).source).toBe('free') // cached
    await ctx.app.services.catalog.invalidate(other.id)
    await waitFor(async () => (await ctx.app.entitlements.get(other.id)).planKey === 'pro', { message: 'entitlements follow the catalog' })
  })

  it('a comp with an expiry stops applying when it runs out, without any write', async () => {
    const other = await tenantWith(ctx.app)
    const expiresAt = new Date(Date.now() + 1500).toISOString()
    const res = await comp(ops, other.id, { planKey: 'pro', expiresAt })
    expect(res.json()).toMatchObject({ compPlanKey: 'pro', compExpiresAt: expiresAt, entitlements: { source: 'comp', planKey: 'pro', compExpiresAt: expiresAt } })
    // What the tenant's members see.
    expect((await other.as(other.viewer).get('/billing/entitlements')).json()).toMatchObject({ source: 'comp', planKey: 'pro', tierLevel: 1, compExpiresAt: expiresAt })
    await waitFor(async () => (await ctx.app.entitlements.get(other.id)).source === 'free', { message: 'the comp expires' })
    expect((await other.as(other.viewer).get('/billing/entitlements')).json()).toEqual({
      source: 'free',
      planKey: 'free',
      tierLevel: 0,
      features: ['projects', 'members', 'api_access'],
      limits: { members: 3, projects: 10, apiKeys: 2, requestsPerMinute: 600, storageMb: 100, realtimeConnections: 25 },
      compExpiresAt: null,
    })
    const [row] = await ctx.app.host.db.select({ key: tenants.compPlanKey }).from(tenants).where(eq(tenants.id, other.id))
    expect(row!.key).toBe('pro') // kept for the record; it simply no longer applies
  })
})

describe('POST /admin/api/tenants/:id/plan', () => {
  it('anonymous: 401; not a platform admin: 403 PLATFORM_ADMIN_REQUIRED (nothing changes)', async () => {
    const url = `/admin/api/tenants/${t.id}/plan`
    expect((await ctx.app.inject({ method: 'POST', url, payload: { planKey: 'pro' } })).statusCode).toBe(401)
    const denied = await comp(plain, t.id, { planKey: 'pro' })
    expect(denied.statusCode).toBe(403)
    expect(denied.json()).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' })
    expect((await ctx.app.entitlements.get(t.id)).source).toBe('free')
  })

  it('bad input: 400 with the kit’s error body; an unknown tenant: 404', async () => {
    for (const [body, code] of [
      [{}, 'VALIDATION_ERROR'],
      [{ planKey: 'pro', extra: 1 }, 'VALIDATION_ERROR'],
      [{ planKey: 'pro', expiresAt: 'tomorrow' }, 'VALIDATION_ERROR'],
      [{ planKey: 'platinum' }, 'UNKNOWN_PLAN'],
      [{ planKey: 'pro', expiresAt: new Date(Date.now() - 60_000).toISOString() }, 'INVALID_EXPIRY'],
    ] as const) {
      const res = await comp(ops, t.id, body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, error: 'Bad Request', code })
    }
    const missing = await comp(ops, uuidv7(), { planKey: 'pro' })
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
    expect(await auditRows(ctx.app, 'admin.tenant_plan_comped', t.id)).toHaveLength(0)
  })
})
