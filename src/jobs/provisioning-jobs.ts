/**
 * Tenant lifecycle work on the queue.
 *
 * Provisioning: one system job per step of the lifecycle's `created` event, in the
 * lifecycle's order (LIFECYCLE stays the one place that says what happens), each submitting the next
 * when it succeeds. Every step is idempotent and records its progress in the catalog, so a retried or
 * re-run step is safe; a step that exhausts its retries leaves the tenant 'failed' at that step.
 *
 * Start it with `tasks.submit(PROVISION_FIRST_JOB, { tenantId, ownerUserId })` once the catalog row
 * exists in 'provisioning'; the tenant becomes 'active' when the last step has run.
 *
 * Fleet migrations (`tenants -- migrate --queue`): one `tenant.migrate` job per tenant; progress and
 * failures are in the catalog (migration_status / migration_error), as with the in-process fleet run.
 */
import { Type } from 'typebox'
import { LIFECYCLE, type ProvisionStep } from '../tenancy/lifecycle.js'
import { migrateTenant } from '../tenancy/fleet.js'
import type { Provisioner } from '../tenancy/provisioning.js'
import type { PoolManager } from '../tenancy/types.js'
import { type JobContext, pipeline, pipelineStart, systemJob, TenantIdSchema } from './registry.js'

export const ProvisionPayload = Type.Object(
  { tenantId: TenantIdSchema, ownerUserId: Type.Optional(Type.String({ format: 'uuid' })) },
  { additionalProperties: false },
)

export interface ProvisioningJobDeps {
  provisioner: Pick<Provisioner, 'steps'>
}

const runStep = (step: ProvisionStep) => (ctx: JobContext<ProvisioningJobDeps>, p: { tenantId: string; ownerUserId?: string }) =>
  step === 'seedOwner' ? ctx.deps.provisioner.steps.seedOwner(p.tenantId, p.ownerUserId) : ctx.deps.provisioner.steps[step](p.tenantId)

export const PROVISIONING_JOBS = pipeline(
  'tenant.provision',
  ProvisionPayload,
  LIFECYCLE.created.steps.map((step) => [step, runStep(step)] as const),
  { maxRetries: 5, backoff: { type: 'exponential', delayMs: 1000 } },
)

export const PROVISION_FIRST_JOB = pipelineStart('tenant.provision', LIFECYCLE.created.steps[0]) as keyof typeof PROVISIONING_JOBS

export interface FleetJobDeps {
  provisioner: Pick<Provisioner, 'writes' | 'template'>
  pools: PoolManager
}

export const tenantMigrate = systemJob({
  payload: Type.Object({ tenantId: TenantIdSchema }, { additionalProperties: false }),
  maxRetries: 2,
  backoff: { type: 'exponential', delayMs: 5000 },
  async process(ctx: JobContext<FleetJobDeps>, p) {
    const { writes, template } = ctx.deps.provisioner
    const outcome = await migrateTenant(await writes.get(p.tenantId), {
      writes,
      info: template.info,
      folder: template.folder,
      pools: ctx.deps.pools,
    })
    return { outcome, version: template.info.version }
  },
})

export const FLEET_JOBS = { 'tenant.migrate': tenantMigrate }
