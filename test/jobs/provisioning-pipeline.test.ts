/**
 * Provisioning through the queue with the real provisioner steps and the worker's own startWorkers():
 * a tenant left in 'provisioning' (its catalog row written, nothing else) becomes active one job per step.
 */
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { migrationInfo } from '../../src/db/migrations.js'
import { LIFECYCLE } from '../../src/tenancy/lifecycle.js'
import { PROVISION_FIRST_JOB } from '../../src/jobs/provisioning-jobs.js'
import { createProvisioner } from '../../src/tenancy/provisioning.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createJobsWorld, type JobsWorld, silent, until } from './helpers.js'

let world: JobsWorld
let runtime: WorkerRuntime

beforeAll(async () => {
  world = await createJobsWorld()
  runtime = await startWorkers(world.services, { concurrency: 2 })
})
afterAll(async () => {
  await runtime?.close()
  await world?.close()
})

/** A catalog row in 'provisioning' with no database yet: what a signup leaves before the pipeline runs. */
async function pendingTenant(slug: string): Promise<string> {
  const { services, env } = world
  const stopped = createProvisioner({
    ...services,
    config: env.config,
    logger: silent,
    faults: {
      beforeStep: () => {
        throw new Error('stop before the first step')
      },
    },
  })
  try {
    const id = await stopped.provision({ slug, name: slug }).then(
      () => {
        throw new Error('provision should have stopped')
      },
      (err: { details?: { tenantId?: string } }) => err.details?.tenantId,
    )
    if (!id) throw new Error('no tenant id in the provisioning error')
    await stopped.writes.update(id, { status: 'provisioning', provisionError: null })
    return id
  } finally {
    await stopped.close()
  }
}

it('runs createDatabase → migrate → seedOwner → activate as one job each, ending active', async () => {
  const tenantId = await pendingTenant('queued-co')
  expect(await world.services.catalog.get(tenantId)).toMatchObject({ status: 'provisioning' })

  const first = await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId })
  expect(first.name).toBe('tenant.provision.createDatabase')
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')

  const tenant = await world.services.catalog.get(tenantId)
  expect(tenant).toMatchObject({ status: 'active', migrationStatus: 'current' })
  const [settings] = await world.services.pools.withTenant(tenant!, (db) => db.execute(sql`select count(*)::int as n from core_settings`))
  expect(settings).toEqual({ n: 1 })

  // One completed system job per lifecycle step, each recorded against the tenant.
  for (const step of LIFECYCLE.created.steps) {
    const records = await runtime.tasks.listJobs({ type: `tenant.provision.${step}` })
    expect(records, step).toHaveLength(1)
    expect(records[0], step).toMatchObject({ status: 'completed', tenantId, retryCount: 0, scope: 'system' })
  }
})

it('tenant.migrate brings a tenant the catalog lists as behind back to current, recorded in sys_jobs', async () => {
  const tenantId = await pendingTenant('behind-co')
  await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId })
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')
  // As after a deploy with a new migration: the catalog says this tenant is behind.
  await world.services.provisioner.writes.update(tenantId, { migrationVersion: '0000_old', migrationStatus: 'pending' })

  const job = await runtime.tasks.submit('tenant.migrate', { tenantId })
  const view = await until(async () => {
    const v = await runtime.tasks.getJob(job.id, 'system')
    return v.status === 'completed' || v.status === 'failed' ? v : undefined
  })
  expect(view).toMatchObject({ status: 'completed', tenantId, result: { outcome: 'migrated', version: migrationInfo('tenant').version } })
  expect(await world.services.provisioner.describe(tenantId)).toMatchObject({
    migrationStatus: 'current',
    migrationVersion: migrationInfo('tenant').version,
  })
})
