/** Response shapes of billing routes shared by /api/billing and /billing (TypeBox, so they feed OpenAPI). */
import { Type } from 'typebox'
import type { SubscriptionView } from './service.js'
import { iso } from '../../core/lib/dates.js'
import { Uuid } from '../../core/lib/schemas.js'

const DateOrNull = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])

export const SubscriptionSchema = Type.Object({
  id: Uuid,
  stripeSubscriptionId: Type.String(),
  status: Type.String(),
  active: Type.Boolean(),
  plan: Type.Union([Type.Object({ id: Type.String(), key: Type.String(), name: Type.String() }), Type.Null()]),
  interval: Type.Union([Type.String(), Type.Null()]),
  currentPeriodStart: DateOrNull,
  currentPeriodEnd: DateOrNull,
  trialEnd: DateOrNull,
  cancelAtPeriodEnd: Type.Boolean(),
  canceledAt: DateOrNull,
  pastDueSince: DateOrNull,
})

export const SubscriptionOrNone = Type.Union([SubscriptionSchema, Type.Null()])


/** A SubscriptionView as JSON (dates as ISO strings). */
export const subscriptionJson = (s: SubscriptionView | null) =>
  s && {
    ...s,
    currentPeriodStart: iso(s.currentPeriodStart),
    currentPeriodEnd: iso(s.currentPeriodEnd),
    trialEnd: iso(s.trialEnd),
    canceledAt: iso(s.canceledAt),
    pastDueSince: iso(s.pastDueSince),
  }
