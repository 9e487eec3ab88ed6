/**
 * Provisioning through the queue with the real provisioner steps and the worker's own startWorkers():
 * a registered tenant (catalog row in 'provisioning', nothing else) becomes active one job per step, and
 * its owner's welcome email reaches a real SMTP server exactly once, also when a step is retried.
 */
import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { users } from '../../drizzle/host/schema.js'
import { migrationInfo } from '../../src/core/db/migrations.js'
import { PROVISION_FIRST_JOB } from '../../src/core/tenancy/provisioning-jobs.js'
import { KIT_LIFECYCLE } from '../../src/features/index.js'
import { welcomeEmailJobId } from '../../src/features/tenants/welcome-email.js'
import { createProvisioner, type Provisioner } from '../../src/core/tenancy/provisioning.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { createJobsWorld, type JobsWorld, queuesIdle, settled, silent, until } from './helpers.js'

let world: JobsWorld
let runtime: WorkerRuntime
let smtp: SmtpCapture
let provisioner: Provisioner
/** Tenants whose sendWelcomeEmail step crashes once, after it queued the email (then BullMQ retries it). */
const crashOnce = new Set<string>()

beforeAll(async () => {
  smtp = await startSmtpCapture()
  world = await createJobsWorld({ SMTP_HOST: smtp.host, SMTP_PORT: String(smtp.port), SMTP_STARTTLS: 'false' })
  // The real provisioner, with one test hook: a crash right after a step did its work.
  provisioner = createProvisioner({
    ...world.services,
    config: world.env.config,
    logger: silent,
    faults: {
      afterStep: (step, tenantId) => {
        if (step === 'sendWelcomeEmail' && crashOnce.delete(tenantId)) throw new Error('worker crashed after queueing the welcome email')
      },
    },
  })
  runtime = await startWorkers(world.services, { concurrency: 2, deps: { provisioner } })
})
afterAll(async () => {
  await runtime?.close()
  await provisioner?.close()
  await world?.close()
  await smtp?.close()
})

async function owner(email: string, name: string) {
  const [user] = await world.services.host.db.insert(users).values({ email, name }).returning()
  return user!
}

it('runs createDatabase → migrate → seedOwner → sendWelcomeEmail → activate as one job each, ending active with one welcome email', async () => {
  const ada = await owner('ada@queued.example', 'Ada <Lovelace>')
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'queued-co', name: 'Queued & Co', ownerUserId: ada.id })
  expect(await world.services.catalog.get(tenantId)).toMatchObject({ status: 'provisioning' })

  const first = await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId, ownerUserId: ada.id })
  expect(first.name).toBe('tenant.provision.createDatabase')
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')

  const tenant = await world.services.catalog.get(tenantId)
  expect(tenant).toMatchObject({ status: 'active', migrationStatus: 'current' })
  const [settings] = await world.services.pools.withTenant(tenant!, (db) => db.execute(sql`select count(*)::int as n from core_settings`))
  expect(settings).toEqual({ n: 1 })

  // One completed system job per lifecycle step, each recorded against the tenant.
  expect(KIT_LIFECYCLE.events.created.steps).toContain('sendWelcomeEmail')
  for (const step of KIT_LIFECYCLE.events.created.steps) {
    const records = await runtime.tasks.listJobs({ type: `tenant.provision.${step}` })
    expect(records, step).toHaveLength(1)
    expect(records[0], step).toMatchObject({ status: 'completed', tenantId, retryCount: 0, scope: 'system' })
  }

  const [mail] = await smtp.waitFor(1, 10_000)
  expect(mail!.envelope.to).toEqual(['ada@queued.example'])
  expect(mail!.subject).toContain('Ada <Lovelace>')
  expect(mail!.text).toContain('Queued & Co')
  expect(mail!.text).toContain(`${world.env.config.appBaseUrl}/`)
  expect(mail!.html).toContain('Ada &lt;Lovelace&gt;')
  expect(mail!.html).toContain('Queued &amp; Co')
  const sent = await settled(runtime.tasks, welcomeEmailJobId(tenantId), 'system')
  expect(sent).toMatchObject({ jobType: 'email.send', status: 'completed' })
})

it('a sendWelcomeEmail step retried after a crash still sends one email, and the tenant ends active', async () => {
  const grace = await owner('grace@queued.example', 'Grace')
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'retried-co', name: 'Retried Co', ownerUserId: grace.id })
  crashOnce.add(tenantId)
  await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId, ownerUserId: grace.id })
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')
  expect(crashOnce.has(tenantId)).toBe(false) // the crash happened

  // The step's record is written just after its work (batched): wait for it, not for the clock.
  const step = await until(
    async () => {
      const [r] = (await runtime.tasks.listJobs({ type: 'tenant.provision.sendWelcomeEmail' })).filter((x) => x.tenantId === tenantId)
      return r?.status === 'completed' ? r : undefined
    },
    10_000,
    'the step record completed',
  )
  expect(step).toMatchObject({ status: 'completed', retryCount: 1 })
  await until(async () => smtp.messages.some((m) => m.envelope.to.includes('grace@queued.example')), 10_000, 'the welcome email')
  // A duplicate would be a second job: once the queues are idle, it would have been sent.
  await until(() => queuesIdle(runtime.tasks.queues), 15_000, 'the queues to be idle')
  expect(smtp.messages.filter((m) => m.envelope.to.includes('grace@queued.example'))).toHaveLength(1)
})

it('a tenant without an owner skips the welcome email', async () => {
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'ownerless-co', name: 'Ownerless' })
  await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId })
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')
  await expect(runtime.tasks.getJob(welcomeEmailJobId(tenantId), 'system')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' })
})

it('tenant.migrate brings a tenant the catalog lists as behind back to current, recorded in sys_jobs', async () => {
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'behind-co', name: 'Behind' })
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

it('a step job re-run on an active tenant completes as already done, and submits no further step', async () => {
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'rerun-co', name: 'Rerun Co' })
  await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId })
  await until(async () => (await world.services.provisioner.describe(tenantId)).status === 'active', 20_000, 'tenant to become active')
  const before = await world.services.provisioner.writes.get(tenantId)

  // As a redelivered or re-submitted job would: the last step, and the first one (which would chain the rest).
  // One after the other: at once, one of them would meet the other's tenant lock (TENANT_BUSY) and retry.
  for (const name of ['tenant.provision.activate', PROVISION_FIRST_JOB] as const) {
    const job = await runtime.tasks.submit(name, { tenantId })
    const view = await until(async () => {
      const v = await runtime.tasks.getJob(job.id, 'system')
      return v.status === 'completed' || v.status === 'failed' ? v : undefined
    })
    expect(view, job.name).toMatchObject({ status: 'completed', retryCount: 0, result: { outcome: 'already_done', status: 'active' } })
  }
  expect(await world.services.provisioner.writes.get(tenantId)).toEqual(before)
  await until(() => queuesIdle(runtime.tasks.queues), 15_000, 'the queues to be idle') // a chained step would have run by then
  const migrateJobs = (await runtime.tasks.listJobs({ type: 'tenant.provision.migrate' })).filter((r) => r.tenantId === tenantId)
  expect(migrateJobs).toHaveLength(1) // the original pipeline's only
})

it('a step job for a deleted tenant fails at once (no retries): retrying cannot bring it back', async () => {
  const { id: tenantId } = await world.services.provisioner.register({ slug: 'deleted-co', name: 'Deleted Co' })
  await world.services.provisioner.run('softDeleted', tenantId)
  const job = await runtime.tasks.submit(PROVISION_FIRST_JOB, { tenantId })
  const view = await until(async () => {
    const v = await runtime.tasks.getJob(job.id, 'system')
    return v.status === 'completed' || v.status === 'failed' ? v : undefined
  })
  expect(view).toMatchObject({ status: 'failed', retryCount: 0 })
  expect(view.errorLog).toContain('tenant "deleted-co" is deleted')
  expect((await world.services.provisioner.describe(tenantId)).status).toBe('deleted')
})
