/**
 * Creating a tenant from a request (signup, Google sign-in, POST /tenants), in the configured mode:
 *   queue (default)   register the catalog row, submit the first provisioning job and answer at once with
 *                     the tenant 'provisioning'; a worker runs the lifecycle and the tenant turns 'active'.
 *   inline            PROVISION_INLINE=true: the whole lifecycle runs in the request (single process, tests).
 * A shared tenant is provisioned in the request whatever the mode: it is a catalog row plus rows in the
 * shared database (a few ms, no DDL), so a hop through the queue (one job per step) would only delay it;
 * its welcome email is still a job. It answers 'active', like inline mode.
 *
 * If the queue refuses the first job, the registered tenant is marked failed at its first step (never left
 * 'provisioning' with nothing coming to finish it) and the caller gets 503 QUEUE_UNAVAILABLE; an operator
 * finishes it with `npm run tenants -- retry <slug>`.
 */
import type { Logger } from 'pino'
import { PROVISION_FIRST_JOB, type ProvisionPayload } from './provisioning-jobs.js'
import type { JobSubmitter } from '../jobs/registry.js'
import { AppError } from '../lib/errors.js'
import { errorMessage } from '../lib/error-log.js'
import { FIRST_PROVISION_STEP } from './lifecycle.js'
import type { ProvisionedTenant, ProvisionInput, Provisioner } from './provisioning.js'
import type { Static } from 'typebox'

export interface CreateTenantDeps {
  provisioner: Pick<Provisioner, 'register' | 'provision' | 'recordFailure'> & Partial<Pick<Provisioner, 'isolationFor'>>
  tasks: Pick<JobSubmitter, 'submit'>
  /** config.jobs.provisionInline */
  inline: boolean
  logger: Logger
}

export async function createTenant(deps: CreateTenantDeps, input: ProvisionInput): Promise<ProvisionedTenant> {
  const { provisioner, tasks, logger } = deps
  if (deps.inline || provisioner.isolationFor?.(input) === 'shared') return provisioner.provision(input)

  const tenant = await provisioner.register(input)
  const payload: Static<typeof ProvisionPayload> = { tenantId: tenant.id, ...(input.ownerUserId ? { ownerUserId: input.ownerUserId } : {}) }
  try {
    await tasks.submit(PROVISION_FIRST_JOB, payload)
  } catch (err) {
    const step = FIRST_PROVISION_STEP
    logger.error({ err, tenantId: tenant.id, slug: tenant.slug }, 'queueing tenant provisioning failed; tenant marked failed')
    await provisioner
      .recordFailure(tenant.id, step, new Error(`queueing provisioning failed: ${errorMessage(err)}`), {
        actorUserId: input.actorUserId ?? input.ownerUserId,
      })
      .catch((markErr: unknown) => logger.error({ err: markErr, tenantId: tenant.id }, 'marking the tenant failed also failed'))
    throw new AppError(503, 'QUEUE_UNAVAILABLE', 'The job queue is unavailable, so the tenant could not be set up; it is marked failed and can be retried', {
      tenantId: tenant.id,
      slug: tenant.slug,
    })
  }
  return tenant
}
