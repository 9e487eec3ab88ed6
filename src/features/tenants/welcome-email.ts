/**
 * The welcome email, a step of the `created` lifecycle right after seedOwner: queued (never sent here:
 * all mail goes through the `email.send` job) before the tenant turns active, so 'active' still means
 * "every step is done" and a failed enqueue leaves the tenant retryable.
 */
import { welcomeEmail } from '../../core/email/senders.js'
import { derivedJobId } from '../../core/jobs/registry.js'
import { type LifecycleStepContribution, lifecycleOwner } from '../../core/tenancy/lifecycle.js'

/**
 * The welcome email's job id, derived from the tenant: a retried or re-run step submits the same id,
 * which the task manager treats as already submitted, so the owner gets one welcome email per tenant.
 */
export const welcomeEmailJobId = (tenantId: string) => derivedJobId(tenantId, 'welcome-email')

export const sendWelcomeEmail: LifecycleStepContribution = {
  event: 'created',
  step: 'sendWelcomeEmail',
  after: 'seedOwner',
  // It needs the owner and the catalog row, nothing seedOwner writes: both start together (one round trip
  // less per provisioning). A seedOwner that fails leaves the tenant failed with this email already queued;
  // the retry queues it again under the same job id, which is a no-op.
  concurrent: true,
  async run(row, ctx, opts) {
    // No owner (a tenant made from the CLI without --owner, or an owner deleted since): nobody to welcome.
    // Read once per run (seedOwner read it already).
    const owner = await lifecycleOwner(row, ctx, opts)
    if (!owner) return undefined
    const message = welcomeEmail({
      to: owner.email,
      userName: owner.name ?? owner.email.split('@')[0]!,
      tenantName: row.name,
      // The dashboard link in the welcome email.
      dashboardUrl: `${ctx.config.appBaseUrl}/`,
    })
    await ctx.tasks.submit('email.send', message, { id: welcomeEmailJobId(row.id) })
    return undefined
  },
}
