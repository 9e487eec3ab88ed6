/**
 * POST /admin/api/tenants/:id/move: a platform admin moves a tenant to the other isolation mode through the
 * `tenants.move` job (202 with its ids), audited; others get 401/403, bad input 400, an unknown tenant 404,
 * a pointless move 409. And the worker's side of a move: a tenant job of a moving tenant waits (delayed,
 * not attempted) and runs once the move is over.
 */
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantMoves, tenants } from '../../drizzle/host/schema.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { SHARED } from '../helpers/env.js'
import { type Member, newMember, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { auditRows, platformAdmin, UA, ua } from './helpers.js'

const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
let worker: WorkerRuntime
let ops: Member
let plain: Member
let t: TenantFixture

beforeAll(async () => {
  worker = await startWorkers(ctx.app.services, { scopes: ['system', 'tenant'], concurrency: 2 })
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  t = await tenantWith(ctx.app, { project: 'kept' })
})
afterAll(async () => {
  await worker?.close(5000)
})

const move = (m: Member, id: string, body: unknown) => m.c.post(`/admin/api/tenants/${id}/move`, body, ua)

describe('POST /admin/api/tenants/:id/move', () => {
  it('anonymous 401, a non-admin 403 PLATFORM_ADMIN_REQUIRED; nothing moves', async () => {
    const anon = await ctx.app.inject({ method: 'POST', url: `/admin/api/tenants/${t.id}/move`, payload: { isolation: 'shared' } })
    expect(anon.statusCode).toBe(401)
    const denied = await move(plain, t.id, { isolation: 'shared' })
    expect(denied.statusCode).toBe(403)
    expect(denied.json()).toMatchObject({ statusCode: 403, code: 'PLATFORM_ADMIN_REQUIRED' })
    expect(await ctx.app.host.db.select().from(tenantMoves)).toEqual([])
  })

  it('bad input 400, an unknown tenant 404, the mode it is in 409 MOVE_NOT_NEEDED', async () => {
    for (const body of [{ isolation: 'rls' }, {}, { isolation: 'shared', extra: 1 }]) {
      const res = await move(ops, t.id, body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
    }
    expect((await move(ops, 'not-a-uuid', { isolation: 'shared' })).statusCode).toBe(400)
    const unknown = await move(ops, '00000000-0000-4000-8000-000000000000', { isolation: 'shared' })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toMatchObject({ code: 'TENANT_NOT_FOUND' })
    const same = await move(ops, t.id, { isolation: 'database' })
    expect(same.statusCode).toBe(409)
    expect(same.json()).toMatchObject({ code: 'MOVE_NOT_NEEDED' })
  })

  it('202 with the move and job ids; the job moves the tenant; audited with the admin, ip and user agent', async () => {
    const res = await move(ops, t.id, { isolation: 'shared' })
    expect(res.statusCode, res.body).toBe(202)
    const body = res.json()
    expect(body).toMatchObject({ id: t.id, jobType: 'tenants.move', moveId: expect.any(String), jobId: body.moveId })
    // Asking again while it is queued or running answers the same move.
    const again = await move(ops, t.id, { isolation: 'shared' })
    if (again.statusCode === 202) expect(again.json().moveId).toBe(body.moveId)
    else expect(again.json()).toMatchObject({ code: 'MOVE_NOT_NEEDED' }) // it finished in between

    await waitFor(async () => (await ctx.app.services.mover.get(body.moveId))?.state === 'done', { message: 'the move job to finish' })
    expect(await ctx.app.services.catalog.get(t.id)).toMatchObject({ isolation: 'shared', moving: false })
    const job = await ops.c.get(`/admin/api/jobs/${body.jobId}`, ua)
    expect(job.statusCode, job.body).toBe(200)
    expect(job.json()).toMatchObject({ status: 'completed' })
    expect((await t.as(t.viewer).get('/projects')).json().items.map((p: { name: string }) => p.name)).toContain('kept')

    const [requested] = await auditRows(ctx.app, 'admin.tenant_move_requested', t.id)
    expect(requested).toMatchObject({ actorUserId: ops.id, userAgent: UA, metadata: { moveId: body.moveId, isolation: 'shared' } })
    const [moved] = await auditRows(ctx.app, 'tenant.moved', t.id)
    expect(moved).toMatchObject({ actorUserId: ops.id, metadata: { moveId: body.moveId, from: 'database', to: 'shared' } })
  })
})

describe('tenant jobs of a moving tenant', () => {
  it('wait, delayed and not attempted, and run once the move is over', async () => {
    const { services } = ctx.app
    const setMoving = async (on: boolean) => {
      await ctx.app.host.db
        .update(tenants)
        .set({ movingSince: on ? new Date() : null })
        .where(eq(tenants.id, t.id))
      await services.catalog.invalidate(t.id, on ? { moving: true } : undefined)
    }
    await setMoving(true)
    try {
      // Submitted before the tenant moved would be the usual case; the record is written, then the worker bounces it.
      await setMoving(false)
      const job = await services.tasks.submit('projects.recount', { tenantId: t.id }, { delayMs: 300 })
      await setMoving(true)
      await waitFor(
        async () =>
          (await services.tasks.queues.byScope('tenant').getJobState(job.id)) === 'delayed' &&
          ((await services.tasks.queues.byScope('tenant').getJob(job.id))?.attemptsStarted ?? 0) >= 1,
        {
          message: 'the job to be taken and put back',
        },
      )
      // Put back, not failed: no attempt counted (a failed attempt waiting out its backoff would be delayed too).
      expect((await services.tasks.queues.byScope('tenant').getJob(job.id))!.attemptsMade).toBe(0)
      const view = await services.tasks.getJob(job.id, { tenantId: t.id })
      expect(view).toMatchObject({ status: 'pending', retryCount: 0 })
      await setMoving(false)
      await waitFor(async () => (await services.tasks.getJob(job.id, { tenantId: t.id })).status === 'completed', {
        message: 'the job to run after the move',
      })
    } finally {
      await setMoving(false)
    }
  })
})
