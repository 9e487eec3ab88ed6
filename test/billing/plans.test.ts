/**
 * Plans: the shipped config/plans.json, seeding with "${ENV}" price placeholders (upsert, deactivate,
 * missing prices reported), the repository, and the public GET /billing/plans.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createPlansRepository,
  type PlanSeed,
  PlansFileError,
  parsePlansFile,
  seedPlans,
  seedPlansFromFile,
} from '../../src/features/billing/plans.js'
import { createHostDatabase, type HostDatabase } from '../../src/core/db/host.js'
import billingRoutes from '../../src/features/billing/routes/billing.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { bareFastify } from './helpers.js'

/** A "${NAME}" price placeholder as written in config/plans.json. */
const ph = (name: string) => `\${${name}}`
const PLANS_FILE = new URL('../../config/plans.json', import.meta.url).pathname
let env: TestEnv
let host: HostDatabase

beforeAll(async () => {
  env = await createTestEnv()
  host = createHostDatabase(env.hostUrl, 2)
})

afterAll(async () => {
  await host?.close()
  await env?.cleanup()
})

describe('config/plans.json', () => {
  it('is valid: free, pro and enterprise, tiers increasing with sort order, prices as env placeholders', () => {
    const plans = parsePlansFile(JSON.parse(readFileSync(PLANS_FILE, 'utf8')))
    expect(plans.map((p) => p.key)).toEqual(['free', 'pro', 'enterprise'])
    expect(plans.map((p) => p.tierLevel)).toEqual([0, 1, 2])
    expect(plans[1]).toMatchObject({ amountMonthly: 2900, trialDays: 14, stripePriceMonthly: ph('STRIPE_MONTHLY_PRICE_ID') })
    // Higher tiers include every feature of lower ones.
    expect(plans[1]!.features).toEqual(expect.arrayContaining(plans[0]!.features))
    expect(plans[2]!.features).toEqual(expect.arrayContaining(plans[1]!.features))
  })

  it('rejects malformed files with a message naming the problem', () => {
    const base = JSON.parse(readFileSync(PLANS_FILE, 'utf8'))
    expect(() => parsePlansFile({ plans: [{ ...base.plans[0], amountMonthly: -1 }] })).toThrow(PlansFileError)
    expect(() => parsePlansFile({ plans: [base.plans[0], base.plans[0]] })).toThrow(/duplicate plan key "free"/)
    expect(() => parsePlansFile({ plans: [] })).toThrow(/invalid plans file/)
  })
})

describe('seeding and the repository', () => {
  it('resolves placeholders, reports unset ones, upserts by key and deactivates removed plans', async () => {
    const first = await seedPlansFromFile(host.db, PLANS_FILE, {
      STRIPE_MONTHLY_PRICE_ID: 'price_pro_m',
      STRIPE_YEARLY_PRICE_ID: 'price_pro_y',
    })
    expect(first.upserted).toEqual(['free', 'pro', 'enterprise'])
    expect(first.missingPrices).toEqual([
      { key: 'enterprise', interval: 'month', placeholder: ph('STRIPE_ENTERPRISE_MONTHLY_PRICE_ID') },
      { key: 'enterprise', interval: 'year', placeholder: ph('STRIPE_ENTERPRISE_YEARLY_PRICE_ID') },
    ])
    const repo = createPlansRepository(host.db)
    expect(await repo.getByKey('pro')).toMatchObject({
      stripePriceMonthly: 'price_pro_m',
      stripePriceYearly: 'price_pro_y',
      amountYearly: 29000,
    })
    expect(await repo.getByKey('enterprise')).toMatchObject({ stripePriceMonthly: null, stripePriceYearly: null })
    const pro = (await repo.getByKey('pro'))!
    expect(await repo.findByPriceId('price_pro_y')).toMatchObject({ id: pro.id })
    expect(await repo.getById(pro.id)).toMatchObject({ key: 'pro' })
    expect(await repo.getById('not-a-uuid')).toBeUndefined()

    // Re-seed: pro changes price and amount (same row), enterprise disappears from the file.
    const plans = parsePlansFile(JSON.parse(readFileSync(PLANS_FILE, 'utf8'))).filter((p) => p.key !== 'enterprise')
    const changed: PlanSeed[] = plans.map((p) => (p.key === 'pro' ? { ...p, amountMonthly: 3900, stripePriceMonthly: 'price_literal' } : p))
    const second = await seedPlans(host.db, changed, {})
    expect(second.deactivated).toEqual(['enterprise'])
    expect(await repo.getByKey('pro')).toMatchObject({
      id: pro.id,
      amountMonthly: 3900,
      stripePriceMonthly: 'price_literal',
      stripePriceYearly: null,
    })
    expect((await repo.listActive()).map((p) => p.key)).toEqual(['free', 'pro'])
    // A deactivated plan still resolves its prices: old subscriptions keep their plan.
    await seedPlansFromFile(host.db, PLANS_FILE, { STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: 'price_ent_m' })
    expect((await repo.listActive()).map((p) => p.key)).toEqual(['free', 'pro', 'enterprise'])
  })
})

describe('GET /billing/plans', () => {
  it('lists active plans in sort order with purchasable intervals, without Stripe configured', async () => {
    await seedPlansFromFile(host.db, PLANS_FILE, { STRIPE_MONTHLY_PRICE_ID: 'price_pro_m', STRIPE_YEARLY_PRICE_ID: 'price_pro_y' })
    await host.sql`update core_pricing_plans set is_active = false where key = 'enterprise'`
    const app = bareFastify()
    await app.register(billingRoutes, { prefix: '/billing', host })
    const res = await app.inject({ url: '/billing/plans' })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.plans.map((p: { key: string }) => p.key)).toEqual(['free', 'pro'])
    expect(body.plans[1]).toEqual({
      id: expect.any(String),
      key: 'pro',
      name: 'Pro',
      description: expect.any(String),
      currency: 'usd',
      amountMonthly: 2900,
      amountYearly: 29000,
      intervals: ['month', 'year'],
      trialDays: 14,
      features: expect.arrayContaining(['exports']),
      tierLevel: 1,
    })
    expect(body.plans[0].intervals).toEqual([])
    await app.close()
  })
})
