/**
 * `tenants.delete`: an owner's DELETE /api/tenant, run off the request (the request holds a lease on the
 * very pool the lifecycle's evictPools step closes, and cancelBilling calls Stripe). The softDeleted
 * lifecycle is idempotent, and the job id is derived from the tenant, so asking twice deletes once.
 *
 * With `hard: true` it runs hardDeleted instead (a platform admin's DELETE /admin/api/tenants/:id?hard=true):
 * DROP DATABASE forces a cluster-wide checkpoint, which belongs in a job, never on a request path. A
 * re-run after the row is gone is 'already_done'. `origin` carries the asking request's ip and user agent
 * into the lifecycle's audit entry.
 */
import { Type } from 'typebox'
import { derivedJobId, type JobContext, type Jobs, systemJob, TenantIdSchema } from '../../core/jobs/registry.js'
import { Uuid } from '../../core/lib/schemas.js'
import type { Provisioner } from '../../core/tenancy/provisioning.js'
import { tenantsExport, tenantsPurgeExports } from './export/jobs.js'

export const tenantDeleteJobId = (tenantId: string) => derivedJobId(tenantId, 'delete')

export const tenantsDelete = systemJob({
  payload: Type.Object(
    {
      tenantId: TenantIdSchema,
      actorUserId: Uuid,
      hard: Type.Optional(Type.Boolean({ description: 'hardDeleted: drop the database and the catalog row' })),
      origin: Type.Optional(Type.Object({ ip: Type.Optional(Type.String()), userAgent: Type.Optional(Type.String()) }, { additionalProperties: false })),
    },
    { additionalProperties: false },
  ),
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  async process(ctx: JobContext<{ provisioner: Pick<Provisioner, 'run'> }>, p) {
    const event = p.hard ? 'hardDeleted' : 'softDeleted'
    return { event, outcome: await ctx.deps.provisioner.run(event, p.tenantId, { actorUserId: p.actorUserId, origin: p.origin }) }
  },
})

export const TENANT_JOBS = { 'tenants.delete': tenantsDelete, 'tenants.export': tenantsExport, 'tenants.purge_exports': tenantsPurgeExports }

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof TENANT_JOBS> {}
}
