/** /admin/api/tenants (and /admin/api/jobs/:id): platform admins list, inspect and run tenants' lifecycle. */
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants, users } from '../../drizzle/host/schema.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createClient } from '../helpers/client.js'
import { type Member, newMember } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { auditRows, bareTenants, platformAdmin, UA, ua } from './helpers.js'

const ctx = useApp()
let worker: WorkerRuntime
let ops: Member
let plain: Member
let owner: Member
let acme: { id: string; slug: string }
let globex: { id: string; slug: string }

beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system'], concurrency: 2 })
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  owner = await newMember(ctx.app, 'acme-owner')
  const { provisioner } = ctx.app.services
  acme = await provisioner.provision({ slug: 'acme-corp', name: 'Acme Corporation', ownerUserId: owner.id, planTier: 'pro' })
  globex = await provisioner.provision({ slug: 'globex', name: 'Globex' })
})
afterAll(async () => {
  await worker?.close(5000)
})

const get = (m: Member, url: string) => m.c.get(url, ua)
const post = (m: Member, url: string, body?: unknown) => m.c.post(url, body, ua)

describe('who may call /admin/api', () => {
  const routes: [string, string][] = [
    ['GET', '/admin/api/tenants'],
    ['POST', '/admin/api/tenants'],
    ['GET', `/admin/api/tenants/00000000-0000-4000-8000-000000000000`],
    ['POST', `/admin/api/tenants/00000000-0000-4000-8000-000000000000/suspend`],
    ['POST', `/admin/api/tenants/00000000-0000-4000-8000-000000000000/resume`],
    ['POST', `/admin/api/tenants/00000000-0000-4000-8000-000000000000/restore`],
    ['DELETE', `/admin/api/tenants/00000000-0000-4000-8000-000000000000`],
    ['POST', '/admin/api/tenants/bulk-suspend'],
    ['POST', '/admin/api/tenants/bulk-resume'],
    ['GET', '/admin/api/jobs/00000000-0000-4000-8000-000000000000'],
  ]
  it('anonymous: 401; a user who is no platform admin: 403 PLATFORM_ADMIN_REQUIRED', async () => {
    for (const [method, url] of routes) {
      const anon = await ctx.app.inject({ method: method as 'GET', url })
      expect(anon.statusCode, `${method} ${url}`).toBe(401)
      expect(anon.json()).toMatchObject({ statusCode: 401, code: 'UNAUTHENTICATED' })
      const denied = await plain.c.request({ method: method as 'GET', url, ...(method === 'POST' ? { payload: { ids: [acme.id] } } : {}) })
      expect(denied.statusCode, `${method} ${url}`).toBe(403)
      expect(denied.json()).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'PLATFORM_ADMIN_REQUIRED' })
    }
    // Nothing happened to the tenant the refused requests named.
    expect((await ctx.app.services.provisioner.writes.get(acme.id)).status).toBe('active')
  })
})

describe('GET /admin/api/tenants', () => {
  it('searches slug, name and owner email; filters by status, plan and migration status', async () => {
    const bySlug = (await get(ops, '/admin/api/tenants?q=ACME')).json()
    expect(bySlug.items.map((t: { slug: string }) => t.slug)).toEqual(['acme-corp'])
    expect(bySlug.items[0]).toMatchObject({ id: acme.id, name: 'Acme Corporation', planTier: 'pro', status: 'active', ownerEmail: owner.email })
    expect((await get(ops, '/admin/api/tenants?q=corporation')).json().items).toHaveLength(1)
    const byOwner = (await get(ops, `/admin/api/tenants?q=${encodeURIComponent(owner.email.slice(0, 12))}`)).json()
    expect(byOwner.items.map((t: { id: string }) => t.id)).toEqual([acme.id])
    // LIKE's wildcards match themselves.
    expect((await get(ops, '/admin/api/tenants?q=%25')).json().items).toEqual([])
    const pro = (await get(ops, '/admin/api/tenants?planTier=pro')).json()
    expect(pro.items.map((t: { id: string }) => t.id)).toEqual([acme.id])
    const current = (await get(ops, '/admin/api/tenants?status=active&migrationStatus=current')).json()
    expect(current.items.map((t: { id: string }) => t.id)).toEqual(expect.arrayContaining([acme.id, globex.id]))
    expect((await get(ops, '/admin/api/tenants?migrationStatus=failed')).json().items).toEqual([])
  })

  it('pages newest first with a cursor', async () => {
    const first = (await get(ops, '/admin/api/tenants?limit=1')).json()
    expect(first.items).toHaveLength(1)
    expect(first.nextCursor).toBe(first.items[0].id)
    const all: string[] = [first.items[0].id]
    let cursor = first.nextCursor
    while (cursor) {
      const next = (await get(ops, `/admin/api/tenants?limit=1&cursor=${cursor}`)).json()
      all.push(...next.items.map((t: { id: string }) => t.id))
      cursor = next.nextCursor
    }
    expect(all).toEqual([...all].sort().reverse())
    expect(all).toEqual(expect.arrayContaining([acme.id, globex.id]))
  })

  it('refuses bad input with the kit’s error body', async () => {
    for (const query of ['status=sleeping', 'limit=0', 'limit=500', 'cursor=abc', 'migrationStatus=x', 'unknown=1', `q=${'x'.repeat(201)}`]) {
      const res = await get(ops, `/admin/api/tenants?${query}`)
      expect(res.statusCode, query).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, error: 'Bad Request', code: expect.any(String), message: expect.any(String) })
    }
  })
})

describe('POST /admin/api/tenants', () => {
  it('provisions a tenant owned by an existing account (PROVISION_INLINE: 201, active), audited with the admin', async () => {
    const newOwner = await newMember(ctx.app, 'new-owner')
    const res = await post(ops, '/admin/api/tenants', { slug: 'initech', name: 'Initech', ownerEmail: newOwner.email.toUpperCase() })
    expect(res.statusCode).toBe(201)
    const { id } = res.json()
    expect(res.json()).toEqual({ id: expect.any(String), slug: 'initech', name: 'Initech', status: 'active', ownerUserId: newOwner.id, invitedOwner: null })
    const detail = (await get(ops, `/admin/api/tenants/${id}`)).json()
    expect(detail).toMatchObject({ status: 'active', ownerEmail: newOwner.email, membersCount: 1, createdBy: newOwner.id, migration: { behind: false } })
    expect((await auditRows(ctx.app, 'tenant.created', id))[0]).toMatchObject({
      actorUserId: ops.id,
      tenantId: id,
      userAgent: UA,
      ip: expect.stringMatching(/^10\./),
      metadata: { slug: 'initech', ownerUserId: newOwner.id },
    })
    // The owner reaches it like any tenant of theirs.
    await newOwner.signIn()
    expect((await newOwner.c.get('/api/projects', { 'x-tenant-id': 'initech' })).statusCode).toBe(200)

    // Without an owner, like `tenants provision` without --owner.
    const bare = await post(ops, '/admin/api/tenants', { slug: 'ownerless', name: 'Ownerless' })
    expect(bare.statusCode).toBe(201)
    expect(bare.json()).toMatchObject({ status: 'active', ownerUserId: null, invitedOwner: null })
  })

  it('409 SLUG_TAKEN, 400 for bad slugs and bodies, 409 OWNER_DISABLED: nothing registered', async () => {
    const before = (await ctx.app.host.db.select({ id: tenants.id }).from(tenants)).length
    const taken = await post(ops, '/admin/api/tenants', { slug: 'acme-corp', name: 'Another Acme' })
    expect(taken.statusCode).toBe(409)
    expect(taken.json()).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'SLUG_TAKEN' })
    for (const body of [{ slug: 'Bad Slug', name: 'x' }, { slug: 'admin', name: 'x' }, { slug: 'fine-slug' }, { slug: 'fine-slug', name: 'x', ownerEmail: 'not-an-email' }, { slug: 'fine-slug', name: 'x', planTier: 'pro' }]) {
      const res = await post(ops, '/admin/api/tenants', body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: expect.any(String), message: expect.any(String) })
    }
    const disabledOwner = await newMember(ctx.app, 'disabled-owner')
    await ctx.app.host.db.update(users).set({ disabledAt: new Date() }).where(eq(users.id, disabledOwner.id))
    const disabled = await post(ops, '/admin/api/tenants', { slug: 'fine-slug', name: 'x', ownerEmail: disabledOwner.email })
    expect(disabled.statusCode).toBe(409)
    expect(disabled.json()).toMatchObject({ statusCode: 409, code: 'OWNER_DISABLED' })
    expect((await ctx.app.host.db.select({ id: tenants.id }).from(tenants)).length).toBe(before)
  })
})

describe('GET /admin/api/tenants/:id', () => {
  it('is the catalog row without secrets, with members, subscription, migration and database size', async () => {
    const res = await get(ops, `/admin/api/tenants/${acme.id}`)
    expect(res.statusCode).toBe(200)
    const t = res.json()
    expect(t).toMatchObject({
      id: acme.id,
      slug: 'acme-corp',
      status: 'active',
      ownerEmail: owner.email,
      membersCount: 1,
      subscription: null,
      migration: { status: 'current', behind: false },
    })
    expect(t.migration.version).toBe(t.migration.latest)
    expect(t.databaseSizeBytes).toBeGreaterThan(1_000_000)
    expect(JSON.stringify(t)).not.toMatch(/postgres(ql)?:\/\/|dbUrl|Encrypted/i)
  })

  it('404 TENANT_NOT_FOUND for an unknown id, 400 for a malformed one', async () => {
    const missing = await get(ops, '/admin/api/tenants/00000000-0000-4000-8000-000000000000')
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
    const bad = await get(ops, '/admin/api/tenants/acme-corp')
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ statusCode: 400, code: expect.any(String) })
  })
})

describe('tenant lifecycle from the admin API', () => {
  const lastAudit = async (action: string, tenantId: string) => {
    const rows = await auditRows(ctx.app, action, tenantId)
    return rows.at(-1)
  }

  it('suspends and resumes, audited with the admin, ip and user agent', async () => {
    const suspended = await post(ops, `/admin/api/tenants/${globex.id}/suspend`)
    expect(suspended.statusCode).toBe(200)
    expect(suspended.json()).toEqual({ id: globex.id, status: 'suspended', outcome: 'done' })
    expect(await lastAudit('tenant.suspended', globex.id)).toMatchObject({
      actorUserId: ops.id,
      tenantId: globex.id,
      ip: expect.stringMatching(/^10\./),
      userAgent: UA,
    })
    // Again: nothing to do, said so.
    expect((await post(ops, `/admin/api/tenants/${globex.id}/suspend`)).json()).toMatchObject({ outcome: 'already_done' })
    expect(await auditRows(ctx.app, 'tenant.suspended', globex.id)).toHaveLength(1)

    const resumed = await post(ops, `/admin/api/tenants/${globex.id}/resume`)
    expect(resumed.json()).toEqual({ id: globex.id, status: 'active', outcome: 'done' })
    expect(await lastAudit('tenant.resumed', globex.id)).toMatchObject({ actorUserId: ops.id, userAgent: UA })
  })

  it('soft deletes, restores (data kept), and refuses transitions the lifecycle does not allow', async () => {
    const restoreActive = await post(ops, `/admin/api/tenants/${globex.id}/restore`)
    expect(restoreActive.statusCode).toBe(200)
    expect(restoreActive.json()).toMatchObject({ outcome: 'already_done', status: 'active' })

    const deleted = await ops.c.delete(`/admin/api/tenants/${globex.id}`, ua)
    expect(deleted.statusCode).toBe(200)
    expect(deleted.json()).toEqual({ id: globex.id, status: 'deleted', outcome: 'done' })
    expect((await ctx.app.services.provisioner.writes.get(globex.id)).deletedAt).not.toBeNull()
    expect(await lastAudit('tenant.deleted', globex.id)).toMatchObject({ actorUserId: ops.id, userAgent: UA })

    const resume = await post(ops, `/admin/api/tenants/${globex.id}/resume`)
    expect(resume.statusCode).toBe(409)
    expect(resume.json()).toMatchObject({ statusCode: 409, code: 'INVALID_TRANSITION' })

    const restored = await post(ops, `/admin/api/tenants/${globex.id}/restore`)
    expect(restored.json()).toEqual({ id: globex.id, status: 'active', outcome: 'done' })
    const row = await ctx.app.services.provisioner.writes.get(globex.id)
    expect(row).toMatchObject({ status: 'active', deletedAt: null })
    expect(await lastAudit('tenant.restored', globex.id)).toMatchObject({ actorUserId: ops.id, userAgent: UA })
    // Its database is the one it had: the catalog entry serves requests again.
    expect((await ctx.app.services.catalog.get(globex.id))?.status).toBe('active')
    expect((await get(ops, `/admin/api/tenants/${globex.id}`)).json().databaseSizeBytes).toBeGreaterThan(0)
  })

  it('hard deletes with ?hard=true in a tenants.delete job: 202 with its id, database dropped, row gone, audited', async () => {
    const doomed = await ctx.app.services.provisioner.provision({ slug: 'doomed', name: 'Doomed' })
    const bad = await ops.c.delete(`/admin/api/tenants/${doomed.id}?hard=maybe`, ua)
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ statusCode: 400, code: expect.any(String) })
    const denied = await plain.c.delete(`/admin/api/tenants/${doomed.id}?hard=true`)
    expect(denied.statusCode).toBe(403)
    expect(denied.json()).toMatchObject({ code: 'PLATFORM_ADMIN_REQUIRED' })
    expect(await ctx.app.services.provisioner.writes.find(doomed.id)).toBeDefined()

    const res = await ops.c.delete(`/admin/api/tenants/${doomed.id}?hard=true`, ua)
    expect(res.statusCode).toBe(202)
    const { jobId } = res.json()
    expect(res.json()).toEqual({ id: doomed.id, jobId: expect.any(String), jobType: 'tenants.delete' })
    expect((await auditRows(ctx.app, 'admin.tenant_hard_delete_requested', doomed.id))[0]).toMatchObject({
      actorUserId: ops.id,
      tenantId: doomed.id,
      userAgent: UA,
      ip: expect.stringMatching(/^10\./),
      metadata: { jobId },
    })
    // Asked again before it ran (or while it runs): the same job, not a second one.
    const again = await ops.c.delete(`/admin/api/tenants/${doomed.id}?hard=true`, ua)
    if (again.statusCode === 202) expect(again.json().jobId).toBe(jobId)
    else expect(again.statusCode).toBe(404)

    const job = await waitFor(
      async () => {
        const j = (await get(ops, `/admin/api/jobs/${jobId}`)).json()
        return j.status === 'completed' || j.status === 'failed' ? j : undefined
      },
      { message: 'the hard delete job to settle', interval: 100, timeout: 25_000 },
    )
    expect(job).toMatchObject({ jobType: 'tenants.delete', status: 'completed', result: { event: 'hardDeleted', outcome: 'done' } })
    expect(await ctx.app.services.provisioner.writes.find(doomed.id)).toBeUndefined()
    const dbs = await ctx.app.host.sql`select 1 from pg_database where datname = ${doomed.dbName}`
    expect(dbs).toHaveLength(0)
    expect(await lastAudit('tenant.hard_deleted', doomed.id)).toMatchObject({ actorUserId: ops.id, userAgent: UA, ip: expect.stringMatching(/^10\./) })
    expect((await ops.c.delete(`/admin/api/tenants/${doomed.id}`, ua)).statusCode).toBe(404)
    expect((await ops.c.delete(`/admin/api/tenants/${doomed.id}?hard=true`, ua)).statusCode).toBe(404)
  })
})

describe('bulk suspend and resume', () => {
  const settled = (jobId: string) =>
    waitFor(
      async () => {
        const job = (await get(ops, `/admin/api/jobs/${jobId}`)).json()
        return job.status === 'completed' || job.status === 'failed' ? job : undefined
      },
      { message: `job ${jobId} to settle`, interval: 100, timeout: 25_000 },
    )

  it('suspends every tenant a filter selects in a job with progress, one audit entry each; resumes by ids', async () => {
    const ids = await bareTenants(ctx.app, 300, { prefix: 'bulk', planTier: 'bulk-plan' })
    const res = await post(ops, '/admin/api/tenants/bulk-suspend', { filter: { planTier: 'bulk-plan' } })
    expect(res.statusCode).toBe(202)
    const { id: jobId, jobType } = res.json()
    expect(jobType).toBe('admin.tenants.bulk')
    const [requested] = await auditRows(ctx.app, 'admin.tenants_bulk_suspended', jobId)
    expect(requested).toMatchObject({ actorUserId: ops.id, userAgent: UA, metadata: { filter: { planTier: 'bulk-plan' } } })

    const job = await settled(jobId)
    expect(job.errorLog).toBeNull()
    expect(job).toMatchObject({
      status: 'completed',
      result: { event: 'suspended', total: 300, done: 300, changed: 300, alreadyDone: 0, skipped: 0, failed: 0 },
    })
    const statuses = await ctx.app.host.db.select({ status: tenants.status }).from(tenants).where(eq(tenants.planTier, 'bulk-plan'))
    expect(statuses.every((s) => s.status === 'suspended')).toBe(true)
    const entries = (await auditRows(ctx.app, 'tenant.suspended')).filter((r) => ids.includes(r.tenantId!))
    expect(entries).toHaveLength(300)
    expect(new Set(entries.map((r) => r.tenantId)).size).toBe(300)
    expect(entries.every((r) => r.actorUserId === ops.id && r.userAgent === UA && r.ip?.startsWith('10.'))).toBe(true)

    // By ids: two of them, plus one unknown id (skipped, named in the result).
    const unknown = '00000000-0000-4000-8000-000000000001'
    const back = await post(ops, '/admin/api/tenants/bulk-resume', { ids: [ids[0], ids[1], unknown] })
    expect(back.statusCode).toBe(202)
    expect(await settled(back.json().id)).toMatchObject({
      status: 'completed',
      result: { event: 'resumed', total: 3, changed: 2, skipped: 1, problems: [{ tenantId: unknown, code: 'TENANT_NOT_FOUND' }] },
    })
    expect((await ctx.app.services.provisioner.writes.get(ids[0]!)).status).toBe('active')
    expect((await ctx.app.services.provisioner.writes.get(ids[2]!)).status).toBe('suspended')
  })

  it('refuses a body with both or neither of ids and filter, and malformed ids', async () => {
    for (const body of [{}, { ids: [acme.id], filter: { status: 'active' } }, { ids: [] }, { ids: ['nope'] }, { filter: { status: 'asleep' } }, { ids: [acme.id, acme.id] }]) {
      const res = await post(ops, '/admin/api/tenants/bulk-suspend', body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: expect.any(String), message: expect.any(String) })
    }
    expect((await ctx.app.services.provisioner.writes.get(acme.id)).status).toBe('active')
  })

  it('GET /admin/api/jobs/:id: 404 JOB_NOT_FOUND for an unknown job, 400 for a malformed id', async () => {
    expect((await get(ops, '/admin/api/jobs/00000000-0000-4000-8000-000000000000')).json()).toMatchObject({ code: 'JOB_NOT_FOUND' })
    expect((await get(ops, '/admin/api/jobs/nope')).statusCode).toBe(400)
  })
})

describe('an anonymous client with a session cookie from a plain account', () => {
  it('gets nothing either (the guard reads the DB, not the session)', async () => {
    const c = createClient(ctx.app)
    expect((await c.get('/admin/api/tenants')).statusCode).toBe(401)
  })
})
