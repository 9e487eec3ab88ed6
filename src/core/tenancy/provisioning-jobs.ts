/**
 * Tenant lifecycle work on the queue.
 *
 * Provisioning: one system job per step of the lifecycle's `created` event, in the assembled
 * lifecycle's order (it stays the one place that says what happens), each submitting the next
 * when it succeeds. Every step is idempotent and records its progress in the catalog, so a retried or
 * re-run step is safe; a step that exhausts its retries leaves the tenant 'failed' at that step.
 *
 * Start it with `tasks.submit(PROVISION_FIRST_JOB, { tenantId, ownerUserId })` once the catalog row
 * exists in 'provisioning' (provisioner.register; tenancy/create-tenant.ts does both); the tenant becomes
 * 'active' when the last step has run. A step re-run on a tenant already past provisioning is a no-op
 * success ('already_done') that ends the pipeline. Steps that submit jobs (the welcome email) derive the
 * job id from the tenant, so a retried step never submits twice.
 *
 * Fleet migrations (`tenants -- migrate --queue`): one `tenant.migrate` job per tenant; progress and
 * failures are in the catalog (migration_status / migration_error), as with the in-process fleet run.
 */
import { Type } from 'typebox'
import { FIRST_PROVISION_STEP, type ProvisionStep } from './lifecycle.js'
import type { HostDatabase } from '../db/host.js'
import { migrationInfo, MIGRATIONS } from '../db/migrations.js'
import { listBehind, migrateTenant } from './fleet.js'
import { AppError } from '../lib/errors.js'
import { DEFAULT_DB_SERVER } from './servers.js'
import type { Provisioner, StepResult } from './provisioning.js'
import type { PoolManager } from './types.js'
import {
  derivedJobId,
  type JobContext,
  type Jobs,
  type JobSubmitter,
  pipeline,
  pipelineStart,
  systemJob,
  TenantIdSchema,
} from '../jobs/registry.js'
import { Uuid } from '../lib/schemas.js'

export const ProvisionPayload = Type.Object({ tenantId: TenantIdSchema, ownerUserId: Type.Optional(Uuid) }, { additionalProperties: false })

export interface ProvisioningJobDeps {
  provisioner: Pick<Provisioner, 'steps'>
}

const runStep = (step: ProvisionStep) => (ctx: JobContext<ProvisioningJobDeps>, p: { tenantId: string; ownerUserId?: string }) =>
  ctx.deps.provisioner.steps[step]!(p.tenantId, p.ownerUserId)

/** Retrying cannot help: the tenant was deleted (INVALID_TRANSITION from 'deleted', or its row is gone). */
const hopeless = (err: unknown) => err instanceof AppError && (err.code === 'INVALID_TRANSITION' || err.code === 'TENANT_NOT_FOUND')

/**
 * A step on a tenant already past provisioning (a redelivered or re-submitted job) succeeds with
 * `{ outcome: 'already_done' }` in its record, and the rest of the pipeline is not submitted.
 */
export const provisioningJobs = (steps: readonly ProvisionStep[]) =>
  pipeline(
    'tenant.provision',
    ProvisionPayload,
    steps.map((step) => [step, runStep(step)] as const),
    {
      maxRetries: 5,
      backoff: { type: 'exponential', delayMs: 1000 },
      permanent: hopeless,
      finished: (result) => (result as StepResult | undefined)?.outcome === 'already_done',
    },
  )

export type ProvisioningJobs = ReturnType<typeof provisioningJobs>

export const PROVISION_FIRST_JOB = pipelineStart(
  'tenant.provision',
  FIRST_PROVISION_STEP,
) as `tenant.provision.${typeof FIRST_PROVISION_STEP}`

export interface FleetJobDeps {
  provisioner: Pick<Provisioner, 'writes' | 'template' | 'shared' | 'servers'>
  pools: PoolManager
  /** A tenant with an open move is not migrated (409 MOVE_IN_PROGRESS: the job retries). */
  host?: HostDatabase
}

export const tenantMigrate = systemJob({
  payload: Type.Object({ tenantId: TenantIdSchema }, { additionalProperties: false }),
  maxRetries: 2,
  backoff: { type: 'exponential', delayMs: 5000 },
  async process(ctx: JobContext<FleetJobDeps>, p) {
    const { writes, template } = ctx.deps.provisioner
    const row = await writes.get(p.tenantId)
    // Like the CLI fleet run: provisioning tenants are migrated by their own pipeline, deleted ones never.
    if (row.status !== 'active' && row.status !== 'suspended')
      return { outcome: 'not_run' as const, status: row.status, version: template.info.version }
    const outcome = await migrateTenant(row, {
      writes,
      info: template.info,
      folder: template.folder,
      pools: ctx.deps.pools,
      shared: async (server) => (server === DEFAULT_DB_SERVER ? ctx.deps.provisioner.shared : ctx.deps.provisioner.servers.shared(server)),
      host: ctx.deps.host,
    })
    return { outcome, version: template.info.version }
  },
})

export const FLEET_JOBS = { 'tenant.migrate': tenantMigrate }

declare module '../jobs/registry.js' {
  interface JobTypes extends Jobs<typeof FLEET_JOBS> {
    /** One per step of the assembled `created` lifecycle (features add steps, so the names are open). */
    [step: `tenant.provision.${string}`]: ProvisioningJobs[keyof ProvisioningJobs]
  }
}

export interface QueuedFleetMigration {
  /** The tenant migration version the jobs migrate to. */
  version: string
  queued: { tenantId: string; slug: string; jobId: string }[]
  /** Behind, but a migration is running right now (a job, or `tenants migrate`): not queued again. */
  running: string[]
}

/**
 * `tenants migrate --queue`: one `tenant.migrate` job per tenant the catalog lists as behind. Job ids are
 * derived from the tenant, the target version and its catalog row's last write, so running the command
 * twice before anything happened queues nothing new, and a tenant whose job failed is queued again.
 */
export async function queueFleetMigration(deps: {
  host: HostDatabase
  tasks: Pick<JobSubmitter, 'submitMany'>
  folder?: string | undefined
}): Promise<QueuedFleetMigration> {
  const { version } = migrationInfo('tenant', deps.folder ?? MIGRATIONS.tenant)
  const behind = await listBehind({ host: deps.host, folder: deps.folder })
  const due = behind.filter((t) => t.migrationStatus !== 'running')
  const ids = due.map((t) => derivedJobId(t.id, `migrate:${version}:${t.updatedAt.toISOString()}`))
  if (due.length > 0)
    await deps.tasks.submitMany(
      'tenant.migrate',
      due.map((t) => ({ tenantId: t.id })),
      { ids },
    )
  return {
    version,
    queued: due.map((t, i) => ({ tenantId: t.id, slug: t.slug, jobId: ids[i]! })),
    running: behind.filter((t) => t.migrationStatus === 'running').map((t) => t.slug),
  }
}
