/**
 * /api/tenant/export: an owner queues an export (pg_dump of the tenant database + host rows, one .tar.gz),
 * follows it, downloads it once (then 410 EXPORT_GONE, the file deleted); admins and members 403, another
 * tenant's export 404; an archive nobody downloads is purged after 24 h.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantExports } from '../../drizzle/host/schema.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { SHARED } from '../helpers/env.js'
import { newMember, type TenantFixture, tenantApi, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const run = promisify(execFile)
const exportDir = join(tmpdir(), `tk-exports-${process.pid}-${Date.now()}`)
// SHARED: this world also has a shared database, for the shared-isolation case (tenants default to their own database).
const ctx = useApp({ EXPORT_DIR: exportDir, TENANT_ISOLATION: 'database', ...SHARED })
let worker: WorkerRuntime
let t: TenantFixture
let other: TenantFixture
let scratch: string

beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system'], concurrency: 2 })
  t = await tenantWith(ctx.app, { project: 'Exported project Zeta' })
  other = await tenantWith(ctx.app)
  scratch = await mkdtemp(join(tmpdir(), 'tk-export-test-'))
})
afterAll(async () => {
  await worker?.close(5000)
  await rm(exportDir, { recursive: true, force: true })
  if (scratch) await rm(scratch, { recursive: true, force: true })
})

async function readyExport(fixture: TenantFixture): Promise<string> {
  const queued = await fixture.as(fixture.owner).post('/tenant/export')
  expect(queued.statusCode, queued.body).toBe(202)
  const { id } = queued.json()
  await waitFor(async () => (await fixture.as(fixture.owner).get(`/tenant/export/${id}`)).json().status === 'ready', {
    message: 'the export to be ready',
    timeout: 30_000,
  })
  return id
}

describe('owner export', () => {
  it('queues, builds and streams once an archive with the pg_dump (projects rows) and the host rows', async () => {
    const id = await readyExport(t)
    const status = (await t.as(t.owner).get(`/tenant/export/${id}`)).json()
    expect(status).toMatchObject({ id, status: 'ready', error: null, downloadedAt: null })
    expect(status.sizeBytes).toBeGreaterThan(0)
    const file = join(exportDir, `${id}.tar.gz`)
    expect(existsSync(file)).toBe(true)

    const res = await t.as(t.owner).get(`/tenant/export/${id}/download`)
    expect(res.statusCode, res.body.slice(0, 200)).toBe(200)
    expect(res.headers['content-type']).toBe('application/gzip')
    expect(res.headers['content-disposition']).toMatch(new RegExp(`^attachment; filename="${t.slug}-export-`))
    expect(res.rawPayload.length).toBe(status.sizeBytes)

    const archive = join(scratch, 'export.tar.gz')
    await writeFile(archive, res.rawPayload)
    const out = join(scratch, 'out')
    await run('mkdir', ['-p', out])
    await run('tar', ['-xzf', archive, '-C', out])
    expect((await readdir(out)).sort()).toEqual(['database.dump', 'manifest.json', 'memberships.json', 'subscriptions.json', 'tenant.json'])
    const { stdout: list } = await run('pg_restore', ['--list', join(out, 'database.dump')])
    expect(list).toMatch(/TABLE DATA public projects /)
    const { stdout: data } = await run('pg_restore', ['--data-only', '--table=projects', '--file=-', join(out, 'database.dump')])
    expect(data).toContain('Exported project Zeta')
    const tenantJson = await readFile(join(out, 'tenant.json'), 'utf8')
    expect(JSON.parse(tenantJson)).toMatchObject({ id: t.id, slug: t.slug })
    expect(tenantJson).not.toMatch(/dbUrl|db_url|poolerUrl|postgres:\/\//)
    const members = JSON.parse(await readFile(join(out, 'memberships.json'), 'utf8')) as { email: string; role: string }[]
    expect(members).toEqual(expect.arrayContaining([expect.objectContaining({ email: t.owner.email, role: 'owner' })]))
    expect(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'))).toMatchObject({ exportId: id, tenantId: t.id, pgDump: expect.stringMatching(/^pg_dump/) })

    // Once: the file goes when the stream closes, a second download is 410.
    await waitFor(() => !existsSync(file), { message: 'the downloaded archive to be deleted' })
    const again = await t.as(t.owner).get(`/tenant/export/${id}/download`)
    expect(again.statusCode).toBe(410)
    expect(again.json()).toMatchObject({ statusCode: 410, code: 'EXPORT_GONE' })
    expect((await t.as(t.owner).get(`/tenant/export/${id}`)).json()).toMatchObject({ status: 'downloaded' })

    const audited = await ctx.app.host.sql<{ action: string; actor_user_id: string }[]>`
      select action, actor_user_id from sys_audit_logs where tenant_id = ${t.id} and target_id = ${id} order by id`
    expect(audited.map((a) => a.action)).toEqual(['tenant.export_requested', 'tenant.export_downloaded'])
    expect(audited.every((a) => a.actor_user_id === t.owner.id)).toBe(true)
  })

  it('refuses admins and members (403), another tenant’s owner (404), bad ids (400)', async () => {
    // One at a time: while one is pending or running (made within the hour) another request is 409.
    const [stuck] = await ctx.app.host.db
      .insert(tenantExports)
      .values({ tenantId: other.id, status: 'running', expiresAt: new Date(Date.now() + 3600_000) })
      .returning()
    const busy = await other.as(other.owner).post('/tenant/export')
    expect(busy.statusCode).toBe(409)
    expect(busy.json()).toMatchObject({ code: 'EXPORT_IN_PROGRESS', exportId: stuck!.id })
    // …but one stuck for over an hour (its worker died for good) no longer blocks.
    await ctx.app.host.db.update(tenantExports).set({ createdAt: new Date(Date.now() - 2 * 3600_000) }).where(eq(tenantExports.id, stuck!.id))
    const unblocked = await other.as(other.owner).post('/tenant/export')
    expect(unblocked.statusCode, unblocked.body).toBe(202)
    await waitFor(async () => (await other.as(other.owner).get(`/tenant/export/${unblocked.json().id}`)).json().status === 'ready', { message: 'the export' })
    await ctx.app.host.db.update(tenantExports).set({ status: 'failed' }).where(eq(tenantExports.id, stuck!.id))
    for (const who of [t.admin, t.editor, t.viewer]) {
      const res = await t.as(who).post('/tenant/export')
      expect(res.statusCode).toBe(403)
      expect(res.json()).toMatchObject({ code: 'INSUFFICIENT_ROLE' })
    }
    const id = await readyExport(t)
    for (const who of [t.admin, t.viewer]) {
      expect((await t.as(who).get(`/tenant/export/${id}`)).statusCode).toBe(403)
      expect((await t.as(who).get(`/tenant/export/${id}/download`)).statusCode).toBe(403)
    }
    for (const path of [`/tenant/export/${id}`, `/tenant/export/${id}/download`]) {
      const res = await other.as(other.owner).get(path)
      expect(res.statusCode, path).toBe(404)
      expect(res.json()).toMatchObject({ code: 'EXPORT_NOT_FOUND' })
    }
    expect((await t.as(t.owner).get('/tenant/export/not-a-uuid')).statusCode).toBe(400)
    // Still there for its owner: nobody else's attempt consumed it.
    expect((await t.as(t.owner).get(`/tenant/export/${id}/download`)).statusCode).toBe(200)
  })

  it('works while the tenant is suspended (its data is still the owner’s to take)', async () => {
    const s = await tenantWith(ctx.app)
    expect(await ctx.app.services.provisioner.run('suspended', s.id)).toBe('done')
    expect((await s.as(s.owner).get('/projects')).json()).toMatchObject({ code: 'TENANT_SUSPENDED' })
    const id = await readyExport(s)
    expect((await s.as(s.owner).get(`/tenant/export/${id}/download`)).statusCode).toBe(200)
  })

  it('purges an archive nobody downloaded once it expires', async () => {
    const id = await readyExport(other)
    await ctx.app.host.db.update(tenantExports).set({ expiresAt: new Date(Date.now() - 1000) }).where(eq(tenantExports.id, id))
    await ctx.app.services.tasks.submit('tenants.purge_exports', {})
    // The status reads expired as soon as expiresAt has passed; the file goes when the purge job has run.
    await waitFor(() => !existsSync(join(exportDir, `${id}.tar.gz`)), { message: 'the purge job to delete the archive' })
    expect((await other.as(other.owner).get(`/tenant/export/${id}`)).json().status).toBe('expired')
    expect((await other.as(other.owner).get(`/tenant/export/${id}/download`)).json()).toMatchObject({ code: 'EXPORT_GONE' })
  })

  it('a shared-isolation tenant’s dump holds its own rows only (read through row-level security)', async () => {
    const sharedTenant = async (label: string) => {
      const owner = await newMember(ctx.app, label)
      const tenant = await ctx.app.services.provisioner.provision({ slug: `${label}-${process.pid}`, name: label, ownerUserId: owner.id, isolation: 'shared' })
      expect(tenant.isolation).toBe('shared')
      await owner.signIn()
      const api = tenantApi(owner, tenant.slug)
      expect((await api.post('/projects', { name: `${label} secret project` })).statusCode).toBe(201)
      return api
    }
    const a = await sharedTenant('shared-a')
    await sharedTenant('shared-b')
    const queued = await a.post('/tenant/export')
    expect(queued.statusCode, queued.body).toBe(202)
    const { id } = queued.json()
    await waitFor(async () => (await a.get(`/tenant/export/${id}`)).json().status === 'ready', { message: 'the shared export to be ready', timeout: 30_000 })
    const res = await a.get(`/tenant/export/${id}/download`)
    expect(res.statusCode).toBe(200)
    const dir = join(scratch, 'shared')
    await run('mkdir', ['-p', dir])
    await writeFile(join(dir, 'a.tar.gz'), res.rawPayload)
    await run('tar', ['-xzf', join(dir, 'a.tar.gz'), '-C', dir])
    const { stdout: data } = await run('pg_restore', ['--data-only', '--table=projects', '--file=-', join(dir, 'database.dump')])
    expect(data).toContain('shared-a secret project')
    expect(data).not.toContain('shared-b secret project')
    expect(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'))).toMatchObject({ isolation: 'shared' })
  })
})
