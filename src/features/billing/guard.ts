/**
 * Billing gates declared in route config, decided by the tenant's entitlements (entitlements.ts):
 *   fastify.get('/exports', { config: { billing: { subscription: true, feature: 'exports' } } }, handler)
 *   fastify.get('/reports', { config: { billing: { minTier: 1 } } }, handler)
 * Register this plugin AFTER the tenancy plugin: it reads `request.tenant` ({ id } | null), which the
 * tenancy plugin decorates (this file declares nothing about it). Runs in preValidation like every
 * guard (402/403 before a 400), as a route-level hook of each gated route: those run after the scope's
 * own hooks, so the tenant guard has resolved the tenant by then.
 */
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { HostDatabase } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { routeConfig } from '../../core/lib/route-config.js'
import { type Entitlements, type EntitlementsOptions, requireFeature, requirePaidPlan, requireTier, resolveEntitlements } from './entitlements.js'

export interface BillingRouteConfig {
  /** Require a counting subscription or a comped plan (402 SUBSCRIPTION_REQUIRED). */
  subscription?: boolean
  /** Require a plan feature (403 FEATURE_NOT_IN_PLAN). */
  feature?: string
  /** Require a plan of at least this tier level (config/plans.json `tierLevel`; 403 PLAN_TIER_TOO_LOW). */
  minTier?: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    billing?: BillingRouteConfig
  }
}

export interface BillingGuardOptions extends EntitlementsOptions {
  host: HostDatabase
  /** Where entitlements are read (the app's per-process cache); default: the host database each time. */
  entitlements?: (tenantId: string) => Promise<Entitlements>
}

const tenantOf = (req: FastifyRequest) => (req as unknown as { tenant?: { id: string } | null }).tenant ?? null

/** The check itself, usable as a hook anywhere: throws 402/403, or 404 TENANT_NOT_FOUND when no tenant was resolved. */
export function createBillingGuard(opts: BillingGuardOptions) {
  const read = opts.entitlements ?? ((tenantId: string) => resolveEntitlements(opts.host, tenantId, opts))
  return async function billingGuard(req: FastifyRequest): Promise<void> {
    const need = routeConfig(req).billing
    if (!need || (!need.subscription && !need.feature && need.minTier === undefined)) return
    const tenant = tenantOf(req)
    if (!tenant) throw new AppError(404, 'TENANT_NOT_FOUND', 'This route needs a tenant')
    const e = await read(tenant.id)
    if (need.subscription) requirePaidPlan(e)
    if (need.minTier !== undefined) requireTier(e, need.minTier)
    if (need.feature) requireFeature(e, need.feature)
  }
}

const billingGuardPlugin: FastifyPluginAsync<BillingGuardOptions> = async (fastify, opts) => {
  const guard = createBillingGuard(opts)
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.billing) route.preValidation = [route.preValidation ?? []].flat().concat(guard)
  })
}

export default fp(billingGuardPlugin, { name: 'billing-guard' })
