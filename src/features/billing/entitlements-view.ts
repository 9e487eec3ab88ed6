/** A tenant's entitlements as the API shows them (GET /api/billing/entitlements, the admin comp route). */
import { Type } from 'typebox'
import type { Entitlements } from './entitlements.js'

const Cap = Type.Union([Type.Integer(), Type.Null()], { description: 'null: unlimited' })
const DateTimeOrNull = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])

export const EntitlementsSchema = Type.Object({
  source: Type.Union([Type.Literal('subscription'), Type.Literal('comp'), Type.Literal('free'), Type.Literal('none')], {
    description: 'Where the plan in force comes from: a counting subscription, else a comp by a platform admin, else the free plan (none: no plan seeded)',
  }),
  planKey: Type.Union([Type.String(), Type.Null()]),
  tierLevel: Type.Integer(),
  features: Type.Array(Type.String()),
  limits: Type.Object({ members: Cap, projects: Cap, apiKeys: Cap, requestsPerMinute: Cap, storageMb: Cap, realtimeConnections: Cap }),
  compExpiresAt: DateTimeOrNull,
})

export function entitlementsJson(e: Entitlements) {
  const { members = null, projects = null, apiKeys = null, requestsPerMinute = null, storageMb = null, realtimeConnections = null } = e.limits
  return {
    source: e.source,
    planKey: e.planKey,
    tierLevel: e.tierLevel,
    features: [...e.features],
    limits: { members, projects, apiKeys, requestsPerMinute, storageMb, realtimeConnections },
    compExpiresAt: e.compExpiresAt?.toISOString() ?? null,
  }
}
