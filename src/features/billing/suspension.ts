/**
 * Tenant status follows billing (BILLING_SUSPEND_AFTER_GRACE): a tenant whose subscription is still
 * unpaid when the grace period ends is suspended through the lifecycle, and resumed when it pays.
 *
 * Why a tenant is suspended is kept in the audit log, not in a catalog column: right after the
 * lifecycle's own `tenant.suspended` row, billing appends `billing.tenant_suspended` (metadata
 * reason 'billing'). A tenant is "suspended for billing" while that is the latest of its suspension
 * records. An operator who suspends or resumes a tenant writes a later `tenant.suspended` /
 * `tenant.resumed` row, which takes the tenant out of billing's hands: billing never resumes a tenant
 * an operator suspended. (If the process dies between the two rows the suspension reads as an
 * operator's, so the tenant stays suspended until someone resumes it: the safe side.)
 */
import { and, desc, eq, inArray } from 'drizzle-orm'
import { auditLogs, subscriptions, tenants } from '../../../drizzle/host/schema.js'
import type { HostDatabase } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { CORE_LIFECYCLE } from '../../core/tenancy/lifecycle.js'
import type { Provisioner } from '../../core/tenancy/provisioning.js'
import { getActiveSubscription } from './access.js'
import { writeBillingAudit } from './audit.js'

export const BILLING_SUSPENDED = 'billing.tenant_suspended'
export const BILLING_RESUMED = 'billing.tenant_resumed'
/** Subscription statuses that mean "still owes money": the grace check suspends only these. */
export const UNPAID_STATUSES = ['past_due', 'unpaid'] as const

export interface SuspensionDeps {
  host: HostDatabase
  provisioner: Pick<Provisioner, 'run'>
  graceDays: number
}

export type SuspendOutcome = 'suspended' | 'already-suspended' | 'suspended-by-operator' | 'not-active' | 'covered' | 'paid-meanwhile'
export type ResumeOutcome = 'resumed' | 'not-suspended' | 'suspended-by-operator' | 'still-unpaid'

/** Whether the tenant's latest suspension record is billing's. */
export async function isSuspendedForBilling(host: HostDatabase, tenantId: string): Promise<boolean> {
  const [row] = await host.db
    .select({ action: auditLogs.action })
    .from(auditLogs)
    .where(
      and(
        eq(auditLogs.tenantId, tenantId),
        inArray(auditLogs.action, [CORE_LIFECYCLE.suspended.audit, CORE_LIFECYCLE.resumed.audit, BILLING_SUSPENDED]),
      ),
    )
    .orderBy(desc(auditLogs.createdAt), desc(auditLogs.id))
    .limit(1)
  return row?.action === BILLING_SUSPENDED
}

async function tenantStatus(host: HostDatabase, tenantId: string): Promise<string | undefined> {
  const [row] = await host.db.select({ status: tenants.status }).from(tenants).where(eq(tenants.id, tenantId))
  return row?.status
}

const isTransition = (err: unknown) => err instanceof AppError && err.code === 'INVALID_TRANSITION'

async function audit(host: HostDatabase, action: typeof BILLING_SUSPENDED | typeof BILLING_RESUMED, tenantId: string, metadata: object) {
  await writeBillingAudit(host.db, { action, tenantId, metadata: { reason: 'billing', ...metadata } })
}

/**
 * Suspend an active tenant for non-payment, unless a subscription of it still counts. Idempotent: a
 * tenant already suspended for billing is left as is, one an operator suspended is not claimed, and a
 * tenant that is not active (provisioning, deleted) is not touched. A 409 TENANT_BUSY (another lifecycle run) propagates, so the job retries.
 */
export async function suspendForBilling(deps: SuspensionDeps, tenantId: string, details: Record<string, unknown>): Promise<SuspendOutcome> {
  const status = await tenantStatus(deps.host, tenantId)
  if (status === 'suspended') return (await isSuspendedForBilling(deps.host, tenantId)) ? 'already-suspended' : 'suspended-by-operator'
  if (status !== 'active') return 'not-active'
  // Another subscription of the tenant still counts: nothing is owed that blocks access.
  if (await getActiveSubscription(deps.host, tenantId, { graceDays: deps.graceDays })) return 'covered'
  try {
    // Already suspended under the lock: an operator did it between our read and the lock, so not ours to claim.
    if ((await deps.provisioner.run('suspended', tenantId)) === 'already_done') return 'suspended-by-operator'
  } catch (err) {
    // Someone else changed the tenant between our read and the lifecycle's lock: look again.
    if (isTransition(err)) return (await tenantStatus(deps.host, tenantId)) === 'suspended' ? 'suspended-by-operator' : 'not-active'
    throw err
  }
  await audit(deps.host, BILLING_SUSPENDED, tenantId, details)
  // A payment may have landed while we suspended (its resume check saw an active tenant): undo at once.
  if (await getActiveSubscription(deps.host, tenantId, { graceDays: deps.graceDays })) {
    await resumeAfterPayment(deps, tenantId, { ...details, note: 'paid while being suspended' })
    return 'paid-meanwhile'
  }
  return 'suspended'
}

/** Resume a tenant billing suspended, once it has a subscription that counts again. Idempotent. */
export async function resumeAfterPayment(deps: SuspensionDeps, tenantId: string, details: Record<string, unknown>): Promise<ResumeOutcome> {
  if ((await tenantStatus(deps.host, tenantId)) !== 'suspended') return 'not-suspended'
  if (!(await isSuspendedForBilling(deps.host, tenantId))) return 'suspended-by-operator'
  if (!(await getActiveSubscription(deps.host, tenantId, { graceDays: deps.graceDays }))) return 'still-unpaid'
  try {
    // Already active under the lock: resumed by someone else meanwhile.
    if ((await deps.provisioner.run('resumed', tenantId)) === 'already_done') return 'not-suspended'
  } catch (err) {
    if (isTransition(err)) return 'not-suspended'
    throw err
  }
  await audit(deps.host, BILLING_RESUMED, tenantId, details)
  return 'resumed'
}

/** The subscription row a grace check looks at. */
export async function subscriptionStanding(host: HostDatabase, subscriptionId: string) {
  const [row] = await host.db
    .select({ status: subscriptions.status, pastDueSince: subscriptions.pastDueSince, stripeSubscriptionId: subscriptions.stripeSubscriptionId })
    .from(subscriptions)
    .where(eq(subscriptions.id, subscriptionId))
  return row
}
