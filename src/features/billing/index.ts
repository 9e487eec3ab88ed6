/** What other features may use of billing: a tenant's entitlements (limits where resources are created), comping a plan (admin). */
export { type CompInput, type CompResult, compPlan } from './comp.js'
export { type Entitlements, type LimitedResource, limitOf, type PlanLimits, requireApiAccess, requireBelowLimit, requireFeature } from './entitlements.js'
export { EntitlementsSchema, entitlementsJson } from './entitlements-view.js'
export { requireStorageBelowLimit } from './storage.js'
