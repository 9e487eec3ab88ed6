/**
 * Billing gates declared in route config:
 *   fastify.get('/exports', { config: { billing: { subscription: true, feature: 'exports' } } }, handler)
 * Register this plugin AFTER the tenancy plugin: it reads `request.tenant` ({ id } | null), which the
 * tenancy plugin decorates (this file declares nothing about it). Runs in preValidation like every
 * guard (402/403 before a 400), as a route-level hook of each gated route: those run after the scope's
 * own hooks, so the tenant guard has resolved the tenant by then.
 */
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { HostDatabase } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { type AccessOptions, checkFeatureAccess, requireActiveSubscription } from './access.js'

export interface BillingRouteConfig {
  /** Require a counting subscription (402 SUBSCRIPTION_REQUIRED). */
  subscription?: boolean
  /** Require a plan feature (403 FEATURE_NOT_IN_PLAN). */
  feature?: string
}

declare module 'fastify' {
  interface FastifyContextConfig {
    billing?: BillingRouteConfig
  }
}

export interface BillingGuardOptions extends AccessOptions {
  host: HostDatabase
}

const tenantOf = (req: FastifyRequest) => (req as unknown as { tenant?: { id: string } | null }).tenant ?? null

/** The check itself, usable as a hook anywhere: throws 402/403, or 404 TENANT_NOT_FOUND when no tenant was resolved. */
export function createBillingGuard(opts: BillingGuardOptions) {
  return async function billingGuard(req: FastifyRequest): Promise<void> {
    const need = req.routeOptions.config.billing
    if (!need || (!need.subscription && !need.feature)) return
    const tenant = tenantOf(req)
    if (!tenant) throw new AppError(404, 'TENANT_NOT_FOUND', 'This route needs a tenant')
    if (need.subscription) await requireActiveSubscription(opts.host, tenant.id, opts)
    if (need.feature) await checkFeatureAccess(opts.host, tenant.id, need.feature, opts)
  }
}

const billingGuardPlugin: FastifyPluginAsync<BillingGuardOptions> = async (fastify, opts) => {
  const guard = createBillingGuard(opts)
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.billing) route.preValidation = [route.preValidation ?? []].flat().concat(guard)
  })
}

export default fp(billingGuardPlugin, { name: 'billing-guard' })
