/**
 * /api/tenant: admins rename, owners change the slug (the former one keeps resolving for 30 days and
 * stays taken) and delete (confirmed by the slug, soft deleted by the tenants.delete job). Each with
 * the refusals (role, API key, bad input) and the audit rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantDeleteJobId } from '../../src/features/tenants/jobs.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createClient } from '../helpers/client.js'
import { type TenantFixture, tenantApi, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const ctx = useApp()
let worker: WorkerRuntime
beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system'], concurrency: 2 })
})
afterAll(async () => {
  await worker?.close(5000)
})

const expectError = (res: { statusCode: number; body: string; json(): unknown }, status: number, code: string) => {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json()).toMatchObject({ statusCode: status, code, error: expect.any(String), message: expect.any(String) })
}
const auditRows = (tenantId: string, action: string) =>
  ctx.app.host.sql<{ actor_user_id: string; ip: string | null; metadata: Record<string, unknown> }[]>`
    select actor_user_id, ip, metadata from sys_audit_logs where tenant_id = ${tenantId} and action = ${action} order by created_at`

describe('PATCH /api/tenant', () => {
  let t: TenantFixture
  beforeAll(async () => {
    t = await tenantWith(ctx.app)
  })

  it('admins rename it; editors may not; bad names are a 400', async () => {
    const res = await t.as(t.admin).patch('/tenant', { name: 'Renamed Inc' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ id: t.id, slug: t.slug, name: 'Renamed Inc' })
    expect((await t.as(t.viewer).get('/tenant')).json().tenant).toMatchObject({ name: 'Renamed Inc' })
    expectError(await t.as(t.editor).patch('/tenant', { name: 'Nope' }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.as(t.admin).patch('/tenant', { name: '' }), 400, 'VALIDATION_ERROR')
    expectError(await t.as(t.admin).patch('/tenant', {}), 400, 'VALIDATION_ERROR')
    expectError(await t.as(t.admin).patch('/tenant', { name: 'x', plan: 'pro' }), 400, 'VALIDATION_ERROR')
    const [row] = await auditRows(t.id, 'tenant.renamed')
    expect(row).toMatchObject({ actor_user_id: t.admin.id, ip: expect.any(String), metadata: { to: { name: 'Renamed Inc', slug: t.slug } } })
  })

  it('owners change the slug; the former one still reaches the tenant and stays taken; it can be taken back', async () => {
    const old = t.slug
    const next = `${old}-new`
    expectError(await t.as(t.admin).patch('/tenant', { slug: next }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.as(t.owner).patch('/tenant', { slug: 'Not A Slug' }), 400, 'INVALID_SLUG')
    expectError(await t.as(t.owner).patch('/tenant', { slug: 'admin' }), 400, 'INVALID_SLUG')

    const moved = await t.as(t.owner).patch('/tenant', { slug: next })
    expect(moved.statusCode, moved.body).toBe(200)
    expect(moved.json()).toMatchObject({ id: t.id, slug: next })
    // The former slug resolves, by header and by path, to the same tenant (now named by its new slug).
    expect((await t.as(t.viewer).get('/tenant')).json().tenant).toMatchObject({ id: t.id, slug: next })
    const byPath = await t.viewer.c.get(`/t/${old}/api/tenant`)
    expect(byPath.statusCode, byPath.body).toBe(200)
    expect(byPath.json().tenant).toMatchObject({ id: t.id, slug: next })
    // Former and new slug together name one tenant: no conflict.
    expect((await t.viewer.c.get(`/t/${old}/api/tenant`, { 'x-tenant-id': next })).statusCode).toBe(200)

    // Nobody else can take the former slug while it is an alias.
    const other = await tenantWith(ctx.app)
    expectError(await other.as(other.owner).patch('/tenant', { slug: old }), 409, 'SLUG_TAKEN')
    await expect(ctx.app.tenancy.provisioner.register({ slug: old, name: 'Squatter' })).rejects.toMatchObject({ code: 'SLUG_TAKEN' })
    expectError(await other.as(other.owner).patch('/tenant', { slug: next }), 409, 'SLUG_TAKEN')

    // The tenant may take its former slug back; the alias ends and the slug it left becomes one.
    const back = await tenantApi(t.owner, next).patch('/tenant', { slug: old })
    expect(back.statusCode, back.body).toBe(200)
    expect(back.json()).toMatchObject({ slug: old })
    expect((await tenantApi(t.viewer, next).get('/tenant')).json().tenant).toMatchObject({ id: t.id, slug: old })
    const audits = await auditRows(t.id, 'tenant.renamed')
    expect(audits.map((a) => a.metadata.to)).toEqual([
      { name: 'Renamed Inc', slug: old },
      { name: 'Renamed Inc', slug: next },
      { name: 'Renamed Inc', slug: old },
    ])
  })
})

describe('DELETE /api/tenant', () => {
  it('owners delete it, confirmed by the slug; the job soft deletes it through the lifecycle', async () => {
    const t = await tenantWith(ctx.app)
    expectError(await t.as(t.admin).request('DELETE', '/tenant', { confirm: t.slug }), 403, 'INSUFFICIENT_ROLE')
    expectError(await t.as(t.owner).request('DELETE', '/tenant', { confirm: 'something-else' }), 400, 'CONFIRMATION_MISMATCH')
    expectError(await t.as(t.owner).request('DELETE', '/tenant', {}), 400, 'VALIDATION_ERROR')
    expectError(await createClient(ctx.app).delete('/api/tenant', { 'x-tenant-id': t.slug }), 401, 'UNAUTHENTICATED')

    const res = await t.as(t.owner).request('DELETE', '/tenant', { confirm: t.slug })
    expect(res.statusCode, res.body).toBe(202)
    expect(res.json()).toMatchObject({ status: 'deleting', jobId: expect.any(String) })
    // The job id is the tenant's: asking again while it runs finds the same job.
    expect(res.json().jobId).toBe(tenantDeleteJobId(t.id))

    await waitFor(async () => (await ctx.app.tenancy.provisioner.describe(t.id)).status === 'deleted', { message: 'the tenant to be deleted' })
    // The run's audit entry follows its last step (evictPools, after the status changed): wait for the run to end.
    await waitFor(async () => (await auditRows(t.id, 'tenant.deleted')).length > 0, { message: 'the deletion to be audited' })
    expectError(await t.as(t.owner).get('/tenant'), 404, 'TENANT_NOT_FOUND')
    expect(await auditRows(t.id, 'tenant.deletion_requested')).toHaveLength(1)
    expect(await auditRows(t.id, 'tenant.deleted')).toHaveLength(1)
  })
})
