/**
 * Pricing plans: the repository over core_pricing_plans and the seeder that loads config/plans.json.
 * Price ids in the file may be "${ENV_VAR}" placeholders, resolved at seed time (unset → null: that
 * interval is not purchasable). Seeding upserts by key and deactivates plans no longer in the file,
 * never deleting them (subscriptions keep pointing at their plan).
 */
import { readFile } from 'node:fs/promises'
import { and, asc, eq, notInArray, or, sql } from 'drizzle-orm'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { pricingPlans, type PricingPlan } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import { isUuid } from '../../core/lib/uuid.js'

export type { PricingPlan }
export type BillingInterval = 'month' | 'year'

const PriceId = Type.Union([Type.String({ minLength: 1 }), Type.Null()])
/** A cap, or null for unlimited (a limit left out is unlimited too). */
const Cap = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])

/** The numeric caps a plan may set (entitlements.ts enforces them). */
export const PlanLimitsSchema = Type.Object(
  {
    members: Type.Optional(Cap),
    projects: Type.Optional(Cap),
    apiKeys: Type.Optional(Cap),
    requestsPerMinute: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    storageMb: Type.Optional(Cap),
    realtimeConnections: Type.Optional(Cap),
  },
  { additionalProperties: false },
)

export const PlanSeedSchema = Type.Object(
  {
    key: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$' }),
    name: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    amountMonthly: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    amountYearly: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    currency: Type.String({ pattern: '^[a-z]{3}$' }),
    trialDays: Type.Integer({ minimum: 0, maximum: 730 }),
    features: Type.Array(Type.String({ minLength: 1 })),
    limits: Type.Optional(PlanLimitsSchema),
    /** Where the plan's tenants' data lives (read by provisioning from the file, src/core/tenancy/plan-isolation.ts; not seeded). */
    isolation: Type.Optional(Type.Union([Type.Literal('database'), Type.Literal('shared')])),
    tierLevel: Type.Integer({ minimum: 0 }),
    sortOrder: Type.Integer(),
    stripePriceMonthly: Type.Optional(PriceId),
    stripePriceYearly: Type.Optional(PriceId),
    isActive: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
export type PlanSeed = Static<typeof PlanSeedSchema>

export const PlansFileSchema = Type.Object({ $comment: Type.Optional(Type.String()), plans: Type.Array(PlanSeedSchema, { minItems: 1 }) })

export interface PlansRepository {
  listActive(): Promise<PricingPlan[]>
  getByKey(key: string): Promise<PricingPlan | undefined>
  getById(id: string): Promise<PricingPlan | undefined>
  /** The plan selling this Stripe price (monthly or yearly), active or not: old subscriptions keep their plan. */
  findByPriceId(priceId: string): Promise<PricingPlan | undefined>
}

export function createPlansRepository(db: HostDb): PlansRepository {
  return {
    listActive: () =>
      db.select().from(pricingPlans).where(eq(pricingPlans.isActive, true)).orderBy(asc(pricingPlans.sortOrder), asc(pricingPlans.key)),
    async getByKey(key) {
      const [row] = await db.select().from(pricingPlans).where(eq(pricingPlans.key, key))
      return row
    },
    async getById(id) {
      if (!isUuid(id)) return undefined
      const [row] = await db.select().from(pricingPlans).where(eq(pricingPlans.id, id))
      return row
    },
    async findByPriceId(priceId) {
      const [row] = await db
        .select()
        .from(pricingPlans)
        .where(or(eq(pricingPlans.stripePriceMonthly, priceId), eq(pricingPlans.stripePriceYearly, priceId)))
        .orderBy(sql`${pricingPlans.isActive} desc`)
        .limit(1)
      return row
    },
  }
}

/** The Stripe price of a plan for an interval, if it is sold that way. */
export function priceFor(plan: PricingPlan, interval: BillingInterval): string | null {
  return interval === 'year' ? plan.stripePriceYearly : plan.stripePriceMonthly
}

/** Which interval of the plan a price id is (falls back to undefined for a price the plan doesn't list). */
export function intervalOfPrice(plan: PricingPlan | undefined, priceId: string | null): BillingInterval | undefined {
  if (!plan || !priceId) return undefined
  if (plan.stripePriceMonthly === priceId) return 'month'
  if (plan.stripePriceYearly === priceId) return 'year'
  return undefined
}

export class PlansFileError extends Error {
  override name = 'PlansFileError'
}

/** Resolve "${ENV_VAR}" placeholders; an unset or empty variable gives null. Anything else is taken literally. */
export function resolvePriceId(value: string | null | undefined, env: NodeJS.ProcessEnv): string | null {
  if (value === null || value === undefined) return null
  const m = /^\$\{([A-Z_][A-Z0-9_]*)\}$/.exec(value)
  if (!m) return value
  const resolved = env[m[1]!]?.trim()
  return resolved ? resolved : null
}

export function parsePlansFile(json: unknown): PlanSeed[] {
  if (!Value.Check(PlansFileSchema, json)) {
    const errors = Value.Errors(PlansFileSchema, json)
      .slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message}`)
    throw new PlansFileError(`invalid plans file: ${errors.join('; ')}`)
  }
  const keys = new Set<string>()
  for (const p of json.plans) {
    if (keys.has(p.key)) throw new PlansFileError(`invalid plans file: duplicate plan key "${p.key}"`)
    keys.add(p.key)
  }
  return json.plans
}

export interface SeedResult {
  upserted: string[]
  deactivated: string[]
  /** Plans with a price for an interval whose placeholder variable is unset: not purchasable for that interval. */
  missingPrices: { key: string; interval: BillingInterval; placeholder: string }[]
}

export async function seedPlans(db: HostDb, plans: PlanSeed[], env: NodeJS.ProcessEnv = process.env): Promise<SeedResult> {
  const result: SeedResult = { upserted: [], deactivated: [], missingPrices: [] }
  await db.transaction(async (tx) => {
    for (const p of plans) {
      const monthly = resolvePriceId(p.stripePriceMonthly, env)
      const yearly = resolvePriceId(p.stripePriceYearly, env)
      if (p.stripePriceMonthly && !monthly) result.missingPrices.push({ key: p.key, interval: 'month', placeholder: p.stripePriceMonthly })
      if (p.stripePriceYearly && !yearly) result.missingPrices.push({ key: p.key, interval: 'year', placeholder: p.stripePriceYearly })
      const values = {
        key: p.key,
        name: p.name,
        description: p.description ?? null,
        stripePriceMonthly: monthly,
        stripePriceYearly: yearly,
        amountMonthly: p.amountMonthly,
        amountYearly: p.amountYearly,
        currency: p.currency,
        trialDays: p.trialDays,
        features: p.features,
        limits: p.limits ?? {},
        tierLevel: p.tierLevel,
        sortOrder: p.sortOrder,
        isActive: p.isActive ?? true,
      }
      const { key: _key, ...update } = values
      await tx
        .insert(pricingPlans)
        .values(values)
        .onConflictDoUpdate({ target: pricingPlans.key, set: { ...update, updatedAt: sql`now()` } })
      result.upserted.push(p.key)
    }
    const gone = await tx
      .update(pricingPlans)
      .set({ isActive: false, updatedAt: sql`now()` })
      .where(
        and(
          eq(pricingPlans.isActive, true),
          notInArray(
            pricingPlans.key,
            plans.map((p) => p.key),
          ),
        ),
      )
      .returning({ key: pricingPlans.key })
    result.deactivated = gone.map((g) => g.key)
  })
  return result
}

/** What `npm run db:seed` calls. */
export async function seedPlansFromFile(db: HostDb, path: string, env: NodeJS.ProcessEnv = process.env): Promise<SeedResult> {
  let json: unknown
  try {
    json = JSON.parse(await readFile(path, 'utf8'))
  } catch (err) {
    throw new PlansFileError(`cannot read plans file ${path}: ${(err as Error).message}`)
  }
  return seedPlans(db, parsePlansFile(json), env)
}
