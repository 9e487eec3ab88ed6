/**
 * Queue mode end to end (PROVISION_INLINE=false), over HTTP with a real worker in the test process and a
 * real SMTP server: signup answers at once with the tenant 'provisioning', the worker makes it 'active',
 * the welcome email arrives once; POST /tenants answers 202; a queue that refuses the job leaves the
 * tenant failed (not stuck) with 503; `tenants migrate --queue` hands a behind tenant to the worker.
 */
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditLogs } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { migrationInfo } from '../../src/core/db/migrations.js'
import { queuePrefix } from '../../src/core/jobs/queues.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { type Client, createClient } from '../helpers/client.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { useApp } from '../helpers/use-app.js'
import { queuesIdle, until } from './helpers.js'

let worker: WorkerRuntime
let smtp: SmtpCapture

beforeAll(async () => {
  smtp = await startSmtpCapture()
})
afterAll(async () => {
  await smtp?.close()
})
const ctx = useApp(() => ({ PROVISION_INLINE: 'false', SMTP_HOST: smtp.host, SMTP_PORT: String(smtp.port), SMTP_STARTTLS: 'false' }))
beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { concurrency: 4 })
})
afterAll(async () => {
  await worker?.close(5000)
})

/** Stop the in-process worker taking jobs (what "no worker running yet" looks like), or let it go on. */
const pauseWorker = () => Promise.all(worker.workers.workers.map((w) => w.pause()))
const resumeWorker = () => {
  for (const w of worker.workers.workers) w.resume()
}

const mailTo = (address: string) => smtp.messages.filter((m) => m.envelope.to.includes(address))

async function tenantStatus(c: Client, tenantId: string): Promise<string | undefined> {
  const me = (await c.get('/me')).json() as { memberships: { tenantId: string; tenantStatus: string }[] }
  return me.memberships.find((m) => m.tenantId === tenantId)?.tenantStatus
}

describe('signup in queue mode', () => {
  it('answers 201 with the tenant provisioning; tenant routes say 409 until the worker has made it active; one welcome email', async () => {
    const c = createClient(ctx.app)
    await pauseWorker()
    const signup = await c.signup('queued.ada@example.com', undefined, 'Ada')
    expect(signup.statusCode).toBe(201)
    const { tenant } = signup.json()
    expect(tenant).toMatchObject({ status: 'provisioning', name: "Ada's workspace" })

    const me = (await c.get('/me')).json()
    expect(me.activeTenant).toMatchObject({ tenantId: tenant.id, tenantStatus: 'provisioning', role: 'owner' })
    const early = await c.post('/api/projects', { name: 'Too soon' })
    expect(early.statusCode).toBe(409)
    expect(early.json()).toMatchObject({ code: 'TENANT_NOT_READY' })
    expect((await c.get('/api/projects')).json()).toMatchObject({ code: 'TENANT_NOT_READY' })

    resumeWorker()
    await until(async () => (await tenantStatus(c, tenant.id)) === 'active', 20_000, 'tenant to become active')
    const created = await c.post('/api/projects', { name: 'Analytical Engine' })
    expect(created.statusCode).toBe(201)
    expect((await c.get('/api/tenant')).json()).toMatchObject({ tenant: { id: tenant.id }, role: 'admin', membershipRole: 'owner' })

    // Signup also mails the address-verification link: count the welcome emails.
    const welcomes = () => mailTo('queued.ada@example.com').filter((m) => m.subject?.startsWith('Welcome'))
    await until(async () => welcomes().length > 0, 10_000, 'the welcome email')
    // A second email would be a second job: once the queues are idle, it would have been sent.
    await until(() => queuesIdle(ctx.app.services.tasks.queues), 15_000, 'the queues to be idle')
    const mails = welcomes()
    expect(mails).toHaveLength(1)
    expect(mails[0]!.subject).toContain('Ada')
    expect(mails[0]!.text).toContain("Ada's workspace")
    expect(mails[0]!.text).toContain(`${ctx.env.config.appBaseUrl}/`)
  })
})

describe('POST /tenants in queue mode', () => {
  it('answers 202 with the tenant provisioning, which the worker makes active', async () => {
    const c = createClient(ctx.app)
    await c.signup('queued.grace@example.com')
    const res = await c.post('/tenants', { name: 'Grace Labs', slug: 'grace-labs' })
    expect(res.statusCode).toBe(202)
    const tenant = res.json()
    expect(tenant).toMatchObject({ slug: 'grace-labs', name: 'Grace Labs', status: 'provisioning', role: 'owner' })

    await until(async () => (await tenantStatus(c, tenant.id)) === 'active', 20_000, 'tenant to become active')
    const created = await c.post('/api/projects', { name: 'Compiler' }, { 'x-tenant-id': 'grace-labs' })
    expect(created.statusCode).toBe(201)
    // Who created it, from where: one audit entry, written with the catalog row.
    const audit = await ctx.app.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, tenant.id))
    expect(audit.filter((a) => a.action === 'tenant.created')).toMatchObject([{ ip: expect.stringMatching(/^10\./) }])
    await until(async () => mailTo('queued.grace@example.com').some((m) => m.text?.includes('Grace Labs')), 10_000, 'the welcome email')
  })

  it('marks the tenant failed and answers 503 QUEUE_UNAVAILABLE when the queue refuses the job; retry finishes it', async () => {
    const c = createClient(ctx.app)
    await c.signup('queued.barbara@example.com')
    await until(async () => (await c.get('/me')).json().activeTenant?.tenantStatus === 'active', 20_000, 'personal tenant')
    // A real Redis failure, no stand-in: the system queue's wait list holds a string, so BullMQ's add
    // script fails with WRONGTYPE. The worker is paused so it does not trip over the same key.
    await pauseWorker()
    const waitKey = `${queuePrefix(ctx.env.config, 'system')}:system:wait` // ({<prefix>:system} on a cluster)
    expect(await ctx.app.redis.exists(waitKey)).toBe(0)
    await ctx.app.redis.set(waitKey, 'not a list')
    let res: Awaited<ReturnType<Client['post']>>
    try {
      res = await c.post('/tenants', { name: 'Broken Queue', slug: 'broken-queue' })
    } finally {
      await ctx.app.redis.del(waitKey)
      resumeWorker()
    }
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({ code: 'QUEUE_UNAVAILABLE', slug: 'broken-queue' })

    const failed = await ctx.app.services.provisioner.describe('broken-queue')
    expect(failed).toMatchObject({ status: 'failed', provisionStep: 'createDatabase' })
    expect(failed.provisionError).toMatch(/^createDatabase: queueing provisioning failed: .*WRONGTYPE/)
    const actions = (await ctx.app.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, failed.id))).map((a) => a.action)
    expect(actions).toEqual(['tenant.created', 'tenant.provision_failed'])
    expect((await c.get('/api/projects', { 'x-tenant-id': 'broken-queue' })).json()).toMatchObject({ code: 'TENANT_NOT_READY' })

    // The retry path an operator runs (`npm run tenants -- retry broken-queue`).
    const out: string[] = []
    const code = await runCli(['tenants', 'retry', 'broken-queue'], {
      config: ctx.env.config,
      logger: pino({ level: 'silent' }),
      io: { out: (l) => out.push(l), err: (l) => out.push(l) },
    })
    expect({ code, out }).toEqual({ code: 0, out: ['broken-queue: active'] })
    expect((await c.post('/api/projects', { name: 'Fixed' }, { 'x-tenant-id': 'broken-queue' })).statusCode).toBe(201)
  })
})

describe('tenants migrate --queue', () => {
  async function cli(args: string[]) {
    const out: string[] = []
    const code = await runCli(args, {
      config: ctx.env.config,
      logger: pino({ level: 'silent' }),
      io: { out: (l) => out.push(l), err: (l) => out.push(l) },
    })
    return { code, out }
  }

  it('queues one tenant.migrate job per tenant behind, once, and the worker brings it to current', async () => {
    const version = migrationInfo('tenant').version
    const c = createClient(ctx.app)
    const { tenant } = (await c.signup('queued.behind@example.com')).json()
    await until(async () => (await tenantStatus(c, tenant.id)) === 'active', 20_000, 'tenant to become active')
    expect((await cli(['tenants', 'migrate', '--queue'])).out).toContain(`0 tenant.migrate job(s) queued to bring tenants to ${version}`)

    // As after a deploy with a new migration: the catalog says this tenant is behind.
    await ctx.app.services.provisioner.writes.update(tenant.id, { migrationVersion: '0000_old', migrationStatus: 'pending' })
    await pauseWorker()
    const first = await cli(['tenants', 'migrate', '--queue'])
    const again = await cli(['tenants', 'migrate', '--queue']) // nothing changed yet: the same job, not a second one
    resumeWorker()
    expect(first.code).toBe(0)
    expect(first.out).toContain(`1 tenant.migrate job(s) queued to bring tenants to ${version}`)
    expect(first.out.some((l) => l.includes('npm run tenants -- list'))).toBe(true)
    expect(again.out[0]).toBe(first.out[0]) // same slug, same job id

    await until(
      async () => (await ctx.app.services.provisioner.describe(tenant.id)).migrationStatus === 'current',
      20_000,
      'tenant to be migrated',
    )
    expect(await ctx.app.services.provisioner.describe(tenant.id)).toMatchObject({ migrationVersion: version, migrationStatus: 'current' })
    // The catalog turns current inside the job; its record completes a moment later (record writes are batched).
    const migrateJobs = async () => (await ctx.app.services.tasks.listJobs({ type: 'tenant.migrate' })).filter((j) => j.tenantId === tenant.id)
    await until(async () => (await migrateJobs()).every((j) => j.status === 'completed'), 20_000, 'migrate job record to complete')
    const jobs = await migrateJobs()
    expect(jobs).toHaveLength(1)
    expect(jobs[0]).toMatchObject({ result: { outcome: 'migrated', version } })

    const list = await cli(['tenants', 'list'])
    expect(list.out.find((l) => l.startsWith(tenant.slug))).toMatch(new RegExp(`active .*${version}\\s+current$`))
    expect((await cli(['tenants', 'behind'])).out).toContain('0 tenant(s) behind')
  })

  it('refuses --queue with the in-process options', async () => {
    const res = await cli(['tenants', 'migrate', '--queue', '--concurrency', '2'])
    expect(res.code).toBe(2)
    expect(res.out[0]).toMatch(/--queue migrates every tenant that is behind/)
  })
})
