/**
 * Comped plans: a platform admin grants a tenant a plan without a subscription (a partner, a trial by
 * hand, support), optionally until a date. It applies when no subscription counts (entitlements.ts);
 * a null plan key withdraws it. Written with its audit entry in one transaction; the caller then
 * invalidates the tenant's entitlements (the admin route does).
 */
import { and, eq, isNull } from 'drizzle-orm'
import { pricingPlans, tenants } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import { type AuditSource, audit } from '../../core/lib/audit.js'
import { badRequest, notFound } from '../../core/lib/errors.js'

export interface CompInput {
  tenantId: string
  /** The plan to grant (config/plans.json key), or null to withdraw the comp. */
  planKey: string | null
  /** When the comp ends (null: until withdrawn); must be in the future. */
  expiresAt: Date | null
  actorUserId: string
}

export interface CompResult {
  tenantId: string
  planKey: string | null
  expiresAt: Date | null
  previous: { planKey: string | null; expiresAt: Date | null }
}

export async function compPlan(db: HostDb, input: CompInput, from?: AuditSource): Promise<CompResult> {
  const { tenantId, planKey } = input
  const expiresAt = planKey === null ? null : input.expiresAt
  if (expiresAt && expiresAt.getTime() <= Date.now()) throw badRequest('INVALID_EXPIRY', 'expiresAt must be in the future')
  if (planKey !== null) {
    const [plan] = await db.select({ id: pricingPlans.id }).from(pricingPlans).where(eq(pricingPlans.key, planKey))
    if (!plan) throw badRequest('UNKNOWN_PLAN', `No plan "${planKey}" (see GET /billing/plans)`, { planKey })
  }
  return db.transaction(async (tx) => {
    const [before] = await tx
      .select({ planKey: tenants.compPlanKey, expiresAt: tenants.compPlanExpiresAt })
      .from(tenants)
      .where(and(eq(tenants.id, tenantId), isNull(tenants.deletedAt)))
      .for('update')
    if (!before) throw notFound('TENANT_NOT_FOUND', 'No such tenant')
    await tx.update(tenants).set({ compPlanKey: planKey, compPlanExpiresAt: expiresAt }).where(eq(tenants.id, tenantId))
    await audit(
      tx,
      {
        action: planKey === null ? 'admin.tenant_comp_withdrawn' : 'admin.tenant_plan_comped',
        actorUserId: input.actorUserId,
        tenantId,
        targetType: 'tenant',
        targetId: tenantId,
        metadata: { planKey, expiresAt: expiresAt?.toISOString() ?? null, previous: { planKey: before.planKey, expiresAt: before.expiresAt?.toISOString() ?? null } },
      },
      from,
    )
    return { tenantId, planKey, expiresAt, previous: before }
  })
}
