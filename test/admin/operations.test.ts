/**
 * The admin API's operations, with the job queue doing the work (PROVISION_INLINE off, a system worker):
 * provisioning a tenant (202), tenant migrations across the fleet, listing and retrying failed jobs.
 */
import { eq } from 'drizzle-orm'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createClient, PASSWORD } from '../helpers/client.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { auditRows, platformAdmin, UA, ua } from './helpers.js'

const BASE = 'https://app.example.test'
const TOKEN_IN_MAIL = /\/invitations\/(inv_[A-Za-z0-9_-]{43})/
let smtp: SmtpCapture
beforeAll(async () => {
  smtp = await startSmtpCapture()
})
afterAll(async () => {
  await smtp?.close()
})
const ctx = useApp(() => ({ APP_BASE_URL: BASE, SMTP_HOST: smtp.host, SMTP_PORT: String(smtp.port), SMTP_STARTTLS: 'false' }), {
  appVars: { PROVISION_INLINE: 'false' },
})
let worker: WorkerRuntime
let ops: Member
let plain: Member
let acme: { id: string; slug: string }

beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system', 'tenant'], concurrency: 2 })
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  acme = await ctx.app.services.provisioner.provision({ slug: 'ops-acme', name: 'Ops Acme' })
})
afterAll(async () => {
  await worker?.close(5000)
})

const get = (m: Member, url: string) => m.c.get(url, ua)
const post = (m: Member, url: string, body?: unknown) => m.c.post(url, body, ua)
const SOME = '00000000-0000-4000-8000-000000000000'

describe('who may call', () => {
  it('anonymous: 401; a user who is no platform admin: 403 PLATFORM_ADMIN_REQUIRED, and nothing happens', async () => {
    for (const [method, url, body] of [
      ['POST', '/admin/api/tenants', { slug: 'sneaky', name: 'Sneaky' }],
      ['GET', '/admin/api/migrations', undefined],
      ['POST', '/admin/api/migrations/fleet', undefined],
      ['GET', '/admin/api/jobs', undefined],
      ['POST', '/admin/api/jobs/retry', { queue: 'system', filter: {} }],
    ] as const) {
      expect((await ctx.app.inject({ method, url })).statusCode, `${method} ${url}`).toBe(401)
      const denied = await plain.c.request({ method, url, ...(body ? { payload: body } : {}) })
      expect(denied.statusCode, `${method} ${url}`).toBe(403)
      expect(denied.json()).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'PLATFORM_ADMIN_REQUIRED' })
    }
    expect(await ctx.app.host.db.select().from(tenants).where(eq(tenants.slug, 'sneaky'))).toEqual([])
  })
})

describe('POST /admin/api/tenants, queued', () => {
  it('202 with the tenant provisioning; the worker makes it active', async () => {
    const owner = await newMember(ctx.app, 'queued-owner')
    const res = await post(ops, '/admin/api/tenants', { slug: 'queued-co', name: 'Queued Co', ownerEmail: owner.email })
    expect(res.statusCode).toBe(202)
    expect(res.json()).toEqual({ id: expect.any(String), slug: 'queued-co', name: 'Queued Co', status: 'provisioning', ownerUserId: owner.id, invitedOwner: null })
    const { id } = res.json()
    expect((await auditRows(ctx.app, 'tenant.created', id))[0]).toMatchObject({ actorUserId: ops.id, userAgent: UA, ip: expect.stringMatching(/^10\./) })
    await waitFor(async () => (await get(ops, `/admin/api/tenants/${id}`)).json().status === 'active', {
      message: 'the queued tenant to be active',
      interval: 100,
      timeout: 25_000,
    })
    expect((await get(ops, `/admin/api/tenants/${id}`)).json()).toMatchObject({ ownerEmail: owner.email, migration: { behind: false } })
  })
})

describe('POST /admin/api/tenants for an address with no account', () => {
  it('invites it as owner; signing up through the invitation makes them the owner', async () => {
    const email = `future-owner-${uuidv7().slice(-6)}@example.com`
    const res = await post(ops, '/admin/api/tenants', { slug: 'invited-co', name: 'Invited Co', ownerEmail: email })
    expect(res.statusCode).toBe(202)
    expect(res.json()).toMatchObject({
      status: 'provisioning',
      ownerUserId: null,
      invitedOwner: { invitationId: expect.any(String), email, expiresAt: expect.any(String) },
    })
    const { id, invitedOwner } = res.json()
    expect((await auditRows(ctx.app, 'invitation.created', invitedOwner.invitationId))[0]).toMatchObject({
      actorUserId: ops.id,
      tenantId: id,
      userAgent: UA,
      metadata: { email, role: 'owner', localRole: 'admin' },
    })
    await waitFor(async () => (await get(ops, `/admin/api/tenants/${id}`)).json().status === 'active', {
      message: 'the invited tenant to be active',
      interval: 100,
      timeout: 25_000,
    })

    const mailed = () => smtp.messages.filter((m) => m.envelope.to.some((t) => t.toLowerCase() === email) && /invited you/.test(m.subject ?? ''))
    await expect.poll(() => mailed().length, { timeout: 10_000 }).toBe(1)
    const token = TOKEN_IN_MAIL.exec(mailed()[0]!.text ?? '')?.[1]
    expect(token).toBeTruthy()
    const page = await ctx.app.inject(`/invitations/${token}`)
    expect(page.json()).toMatchObject({ tenant: { name: 'Invited Co' }, email, role: 'owner', localRole: 'admin' })

    const invitee = createClient(ctx.app)
    const signup = await invitee.post('/auth/signup', { email, password: PASSWORD, invitationToken: token })
    expect(signup.statusCode, signup.body).toBeLessThan(300)
    const detail = (await get(ops, `/admin/api/tenants/${id}`)).json()
    expect(detail).toMatchObject({ ownerEmail: email, membersCount: 1 })
    expect((await invitee.get('/api/projects', { 'x-tenant-id': 'invited-co' })).statusCode).toBe(200)
  })
})

describe('/admin/api/migrations', () => {
  const behindSlugs = async () => (await get(ops, '/admin/api/migrations')).json().behind.map((t: { slug: string }) => t.slug)

  it('lists the tenants behind the newest version; the fleet migration queues a job each, which bring them current', async () => {
    const first = (await get(ops, '/admin/api/migrations')).json()
    expect(first).toMatchObject({ latest: expect.any(String), behindCount: 0, behind: [] })
    const latest = first.latest as string

    // The catalog says acme is on an older version (as after a deploy with a new tenant migration).
    await ctx.app.host.db.update(tenants).set({ migrationVersion: '0000_older' }).where(eq(tenants.id, acme.id))
    const behind = (await get(ops, '/admin/api/migrations')).json()
    expect(behind).toMatchObject({
      latest,
      behindCount: 1,
      behind: [{ id: acme.id, slug: 'ops-acme', status: 'active', migrationVersion: '0000_older', migrationStatus: 'current' }],
    })

    const res = await post(ops, '/admin/api/migrations/fleet')
    expect(res.statusCode).toBe(202)
    expect(res.json()).toMatchObject({ version: latest, queuedCount: 1, queued: [{ tenantId: acme.id, slug: 'ops-acme', jobId: expect.any(String) }], running: [] })
    const [entry] = await auditRows(ctx.app, 'admin.fleet_migration_queued', latest)
    expect(entry).toMatchObject({ actorUserId: ops.id, userAgent: UA, ip: expect.stringMatching(/^10\./), metadata: { version: latest, queued: 1 } })

    const { jobId } = res.json().queued[0]
    await waitFor(async () => (await get(ops, `/admin/api/jobs/${jobId}`)).json().status === 'completed', {
      message: 'the tenant.migrate job to complete',
      interval: 100,
      timeout: 25_000,
    })
    expect(await behindSlugs()).toEqual([])
    expect((await ctx.app.services.provisioner.writes.get(acme.id)).migrationVersion).toBe(latest)

    // Nothing behind: nothing queued, still audited.
    expect((await post(ops, '/admin/api/migrations/fleet')).json()).toMatchObject({ queuedCount: 0, queued: [] })
    expect(await auditRows(ctx.app, 'admin.fleet_migration_queued', latest)).toHaveLength(2)
  })

  it('refuses bad input', async () => {
    for (const query of ['limit=0', 'limit=5000', 'other=1']) {
      const res = await get(ops, `/admin/api/migrations?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: expect.any(String) })
    }
  })
})

describe('/admin/api/jobs: list and retry failed jobs', () => {
  /** A provisioning step for a tenant that does not exist fails at once (permanent: TENANT_NOT_FOUND). */
  const failingJob = async (tenantId: string, step = 'createDatabase') => {
    const job = await ctx.app.services.tasks.submit(`tenant.provision.${step}`, { tenantId })
    await waitFor(async () => (await get(ops, `/admin/api/jobs/${job.id}`)).json().status === 'failed', {
      message: `job ${job.id} to fail`,
      interval: 100,
      timeout: 25_000,
    })
    return job.id
  }
  /** Make the tenant exist (active): the same step then succeeds with nothing to do. */
  const bareTenant = (id: string) =>
    ctx.app.host.db.insert(tenants).values({
      id,
      slug: `bare-${id.slice(-12)}`,
      name: 'bare',
      status: 'active',
      dbName: `bare_${id.replaceAll('-', '')}`,
      dbUrlEncrypted: 'v1.x.x.x.x',
      migrationStatus: 'current',
    })
  const completed = (id: string) =>
    waitFor(async () => (await get(ops, `/admin/api/jobs/${id}`)).json().status === 'completed', {
      message: `job ${id} to complete`,
      interval: 100,
      timeout: 25_000,
    })

  it('lists failed system jobs by state, type, tenant and time range, newest first, cursor paged', async () => {
    const t1 = uuidv7()
    const t2 = uuidv7()
    const before = new Date().toISOString()
    const a = await failingJob(t1)
    const b = await failingJob(t2)
    const failed = (await get(ops, `/admin/api/jobs?state=failed&type=tenant.provision.createDatabase&since=${before}`)).json()
    expect(failed.items.map((j: { id: string }) => j.id)).toEqual([b, a])
    expect(failed.items[0]).toMatchObject({ queue: 'system', tenantId: t2, status: 'failed', errorLog: expect.stringContaining(`no tenant "${t2}"`) })
    expect((await get(ops, `/admin/api/jobs?state=failed&tenantId=${t1}`)).json().items.map((j: { id: string }) => j.id)).toEqual([a])
    expect((await get(ops, `/admin/api/jobs?state=failed&until=${before}&type=tenant.provision.createDatabase`)).json().items).toEqual([])
    const p1 = (await get(ops, `/admin/api/jobs?state=failed&since=${before}&limit=1`)).json()
    expect(p1.items.map((j: { id: string }) => j.id)).toEqual([b])
    const p2 = (await get(ops, `/admin/api/jobs?state=failed&since=${before}&limit=1&cursor=${p1.nextCursor}`)).json()
    expect(p2.items.map((j: { id: string }) => j.id)).toEqual([a])
    expect(p2.nextCursor).toBeNull()
  })

  it('lists one tenant’s jobs (queue=tenant)', async () => {
    const job = await ctx.app.services.tasks.submit('projects.recount', { tenantId: acme.id })
    const res = (await get(ops, `/admin/api/jobs?queue=tenant&tenantId=${acme.id}`)).json()
    expect(res.items[0]).toMatchObject({ id: job.id, queue: 'tenant', tenantId: acme.id, jobType: 'projects.recount' })
    const noTenant = await get(ops, '/admin/api/jobs?queue=tenant')
    expect(noTenant.statusCode).toBe(400)
    expect(noTenant.json()).toMatchObject({ code: 'TENANT_ID_REQUIRED' })
    expect((await get(ops, `/admin/api/jobs?queue=tenant&tenantId=${SOME}`)).json()).toMatchObject({ statusCode: 404, code: 'TENANT_NOT_FOUND' })
  })

  it('lists every tenant’s failed jobs from the queue (queue=tenant&state=failed), cursor paged; retries them by filter', async () => {
    const other = await ctx.app.services.provisioner.provision({ slug: 'ops-globex', name: 'Ops Globex' })
    // A payload the job refuses (an unknown field) fails at once, unrecoverable: a failed job in the tenant queue.
    const broken = async (tenantId: string) => {
      const id = uuidv7()
      await ctx.app.services.tasks.queues.tenant.add('projects.recount', { tenantId, unexpected: true }, { jobId: id, attempts: 3 })
      return id
    }
    const a = await broken(acme.id)
    const b = await broken(other.id)
    const list = (query: string) => get(ops, `/admin/api/jobs?queue=tenant&state=failed&type=projects.recount${query}`)
    await waitFor(async () => (await list('')).json().items.length >= 2, { message: 'both tenant jobs to fail', interval: 100, timeout: 25_000 })
    const all = (await list('')).json()
    expect(all.items.map((j: { id: string }) => j.id).sort()).toEqual([a, b].sort())
    expect(all.items.find((j: { id: string }) => j.id === b)).toMatchObject({
      queue: 'tenant',
      tenantId: other.id,
      jobType: 'projects.recount',
      status: 'failed',
      errorLog: expect.stringContaining('INVALID_JOB_PAYLOAD'),
      maxRetries: 2,
    })
    expect(all.nextCursor).toBeNull()
    const first = (await list('&limit=1')).json()
    expect(first.items).toHaveLength(1)
    const second = (await list(`&limit=1&cursor=${first.nextCursor}`)).json()
    expect(second.items).toHaveLength(1)
    expect(second.nextCursor).toBeNull()
    expect([first.items[0].id, second.items[0].id].sort()).toEqual([a, b].sort())
    expect((await list(`&until=${new Date(Date.now() - 3_600_000).toISOString()}`)).json().items).toEqual([])
    const badCursor = await list(`&cursor=${SOME}`)
    expect(badCursor.statusCode).toBe(400)
    expect(badCursor.json()).toMatchObject({ code: 'INVALID_CURSOR' })
    expect((await get(ops, '/admin/api/jobs?queue=tenant&state=pending')).json()).toMatchObject({ statusCode: 400, code: 'TENANT_ID_REQUIRED' })

    // Retried across tenants by a filter on the tenant queue: both back to waiting (and failing again, the payload is still wrong).
    const retried = await post(ops, '/admin/api/jobs/retry', { queue: 'tenant', filter: { type: 'projects.recount' } })
    expect(retried.json()).toMatchObject({ matched: 2, retried: 2, skipped: [] })
    expect((await auditRows(ctx.app, 'admin.jobs_retried', 'tenant'))[0]).toMatchObject({ actorUserId: ops.id, userAgent: UA, metadata: { retried: 2 } })
  })

  it('retries failed jobs by ids: BullMQ runs them again; unknown ids are named, not retried', async () => {
    const tenantId = uuidv7()
    const id = await failingJob(tenantId)
    await bareTenant(tenantId)
    const res = await post(ops, '/admin/api/jobs/retry', { queue: 'system', ids: [id, SOME] })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ matched: 2, retried: 1, retriedIds: [id], skipped: [{ id: SOME, reason: 'not_found' }], truncated: false })
    const [entry] = await auditRows(ctx.app, 'admin.jobs_retried', 'system')
    expect(entry).toMatchObject({ actorUserId: ops.id, targetType: 'queue', userAgent: UA, ip: expect.stringMatching(/^10\./), metadata: { ids: 2, retried: 1, retriedIds: [id] } })
    await completed(id)
    expect((await get(ops, `/admin/api/jobs/${id}`)).json()).toMatchObject({ status: 'completed', queueState: 'completed' })
    // Not failed any more: not retried again.
    expect((await post(ops, '/admin/api/jobs/retry', { queue: 'system', ids: [id] })).json()).toMatchObject({ retried: 0, skipped: [{ id, reason: 'not_failed' }] })
  })

  it('retries every failed job a filter matches (type and tenant), and only those', async () => {
    const [t1, t2] = [uuidv7(), uuidv7()]
    const wanted = await failingJob(t1, 'migrate')
    const other = await failingJob(t2, 'migrate')
    await bareTenant(t1)
    const res = await post(ops, '/admin/api/jobs/retry', { queue: 'system', filter: { type: 'tenant.provision.migrate', tenantId: t1 } })
    expect(res.json()).toMatchObject({ matched: 1, retried: 1, retriedIds: [wanted], skipped: [] })
    await completed(wanted)
    expect((await get(ops, `/admin/api/jobs/${other}`)).json()).toMatchObject({ status: 'failed', queueState: 'failed' })
    expect((await auditRows(ctx.app, 'admin.jobs_retried', 'system')).at(-1)).toMatchObject({ metadata: { filter: { type: 'tenant.provision.migrate', tenantId: t1 }, retried: 1 } })
  })

  it('refuses bad input with the kit’s error body', async () => {
    for (const query of ['state=broken', 'queue=other', 'limit=0', 'cursor=x', 'since=yesterday', 'tenantId=acme', `since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z`, 'x=1']) {
      const res = await get(ops, `/admin/api/jobs?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: expect.any(String), message: expect.any(String) })
    }
    for (const body of [
      { queue: 'system' },
      { queue: 'system', ids: [SOME], filter: {} },
      { queue: 'nope', filter: {} },
      { queue: 'system', ids: [] },
      { queue: 'system', ids: ['x'] },
      { queue: 'system', filter: { state: 'failed' } },
      { queue: 'system', filter: { since: '2026-02-01T00:00:00Z', until: '2026-01-01T00:00:00Z' } },
    ]) {
      const res = await post(ops, '/admin/api/jobs/retry', body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: expect.any(String), message: expect.any(String) })
    }
  })
})
