/**
 * `tenants.delete`: an owner's DELETE /api/tenant, run off the request (the request holds a lease on the
 * very pool the lifecycle's evictPools step closes, and cancelBilling calls Stripe). The softDeleted
 * lifecycle is idempotent, and the job id is derived from the tenant, so asking twice deletes once.
 */
import { Type } from 'typebox'
import { derivedJobId, type JobContext, type Jobs, systemJob, TenantIdSchema } from '../../core/jobs/registry.js'
import { Uuid } from '../../core/lib/schemas.js'
import type { Provisioner } from '../../core/tenancy/provisioning.js'

export const tenantDeleteJobId = (tenantId: string) => derivedJobId(tenantId, 'delete')

export const tenantsDelete = systemJob({
  payload: Type.Object({ tenantId: TenantIdSchema, actorUserId: Uuid }, { additionalProperties: false }),
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  async process(ctx: JobContext<{ provisioner: Pick<Provisioner, 'run'> }>, p) {
    return { outcome: await ctx.deps.provisioner.run('softDeleted', p.tenantId, { actorUserId: p.actorUserId }) }
  },
})

export const TENANT_JOBS = { 'tenants.delete': tenantsDelete }

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof TENANT_JOBS> {}
}
