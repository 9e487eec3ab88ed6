/**
 * A move and a deletion never overlap (src/core/tenancy/lifecycle.ts `refusedWhileMoving`, move/mover.ts
 * start): while a tenant has an open move, soft and hard deletes are refused with 409 MOVE_IN_PROGRESS at the
 * API (admin and self-service) and in the lifecycle itself, so a `tenants.delete` job that meets the move
 * does not drop anything and retries; once the move is done it deletes the tenant where it now lives.
 * Suspend and resume go on during a move. The other way round: a tenant whose deletion is queued, or whose
 * lifecycle lock is held, does not start a move.
 */
import { and, eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { systemJobs, tenantMoves } from '../../drizzle/host/schema.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { migrateFleet } from '../../src/core/tenancy/fleet.js'
import { createTenantLocks } from '../../src/core/tenancy/lifecycle.js'
import { tenantDeleteJobId } from '../../src/features/tenants/jobs.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { platformAdmin, ua } from '../admin/helpers.js'
import { ADMIN_URL, SHARED } from '../helpers/env.js'
import { type Member, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

// Tenants with a database of their own: the move under test goes to the shared database.
const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
const services = () => ctx.app.services
let ops: Member
let worker: WorkerRuntime | undefined

beforeAll(async () => {
  ops = await platformAdmin(ctx.app)
})
afterAll(async () => {
  await worker?.close(5000)
})

const databaseExists = async (dbName: string) => (await ctx.app.host.sql`select 1 from pg_database where datname = ${dbName}`).length > 0
const openMoves = async (tenantId: string) =>
  ctx.app.host.db
    .select()
    .from(tenantMoves)
    .where(and(eq(tenantMoves.tenantId, tenantId), eq(tenantMoves.state, 'running')))

describe('a tenant whose deletion is under way does not start a move', () => {
  it('a queued tenants.delete job: 409 TENANT_NOT_MOVABLE, no move recorded; the job then deletes it', async () => {
    const t = await tenantWith(ctx.app)
    // No worker yet: the hard delete stays queued (pending).
    const del = await ops.c.delete(`/admin/api/tenants/${t.id}?hard=true`, ua)
    expect(del.statusCode, del.body).toBe(202)
    await waitFor(async () => (await ctx.app.host.db.select().from(systemJobs).where(eq(systemJobs.id, del.json().jobId))).length === 1, {
      message: 'the job record',
    })
    await expect(services().mover.start(t.slug, { target: { isolation: 'shared' } })).rejects.toMatchObject({
      statusCode: 409,
      code: 'TENANT_NOT_MOVABLE',
      message: expect.stringContaining('being deleted'),
    })
    const res = await ops.c.post(`/admin/api/tenants/${t.id}/move`, { isolation: 'shared' }, ua)
    expect(res.statusCode, res.body).toBe(409)
    expect(res.json()).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'TENANT_NOT_MOVABLE' })
    expect(await openMoves(t.id)).toEqual([])

    worker = await startWorkers(services(), { scopes: ['system'], concurrency: 2 })
    await waitFor(async () => !(await services().provisioner.writes.find(t.id)), { message: 'the queued hard delete to run', timeout: 25_000 })
    expect(await databaseExists(t.tenant.dbName)).toBe(false)
  })

  it('a lifecycle run holding the tenant (another process): 409 TENANT_BUSY, no move recorded', async () => {
    const t = await tenantWith(ctx.app)
    const lockSql = connect(ADMIN_URL, { max: 1 })
    const other = createTenantLocks(lockSql)
    try {
      expect(await other.acquire(t.id)).toBe(true)
      await expect(services().mover.start(t.slug, { target: { isolation: 'shared' } })).rejects.toMatchObject({ code: 'TENANT_BUSY' })
      expect(await openMoves(t.id)).toEqual([])
      await other.release(t.id)
      // Free again: the move starts (and is given up here, before it ran).
      const m = await services().mover.start(t.slug, { target: { isolation: 'shared' } })
      expect(await services().mover.abort(m.id)).toMatchObject({ state: 'failed' })
    } finally {
      await lockSql.end()
    }
  })
})

describe('a moving tenant is not deleted under its move', () => {
  let t: TenantFixture
  let moveId: string

  beforeAll(async () => {
    t = await tenantWith(ctx.app, { project: 'kept' })
    // Recorded, not run yet: open (state running) from here until it is run.
    moveId = (await services().mover.start(t.slug, { target: { isolation: 'shared' } })).id
  })

  it('refuses deletes with 409 MOVE_IN_PROGRESS at the admin API, the self-service API and the lifecycle; suspend and resume go on', async () => {
    const hard = await ops.c.delete(`/admin/api/tenants/${t.id}?hard=true`, ua)
    expect(hard.statusCode, hard.body).toBe(409)
    expect(hard.json()).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'MOVE_IN_PROGRESS', message: expect.stringContaining(moveId) })
    const soft = await ops.c.delete(`/admin/api/tenants/${t.id}`, ua)
    expect(soft.statusCode, soft.body).toBe(409)
    expect(soft.json()).toMatchObject({ code: 'MOVE_IN_PROGRESS' })
    const self = await t.as(t.owner).request('DELETE', '/tenant', { confirm: t.slug })
    expect(self.statusCode, self.body).toBe(409)
    expect(self.json()).toMatchObject({ code: 'MOVE_IN_PROGRESS' })
    for (const event of ['hardDeleted', 'softDeleted'] as const) {
      await expect(services().provisioner.run(event, t.id)).rejects.toMatchObject({ statusCode: 409, code: 'MOVE_IN_PROGRESS' })
    }
    // Nothing was queued, dropped or marked.
    expect(await ctx.app.host.db.select().from(systemJobs).where(eq(systemJobs.tenantId, t.id))).toEqual([])
    expect((await services().provisioner.writes.get(t.id)).status).toBe('active')
    expect(await databaseExists(t.tenant.dbName)).toBe(true)

    expect((await ops.c.post(`/admin/api/tenants/${t.id}/suspend`, undefined, ua)).json()).toMatchObject({ status: 'suspended', outcome: 'done' })
    expect((await ops.c.post(`/admin/api/tenants/${t.id}/resume`, undefined, ua)).json()).toMatchObject({ status: 'active', outcome: 'done' })
  })

  it('a tenants.delete job that meets the move drops nothing and retries; after the move it deletes the tenant where it lives now', async () => {
    worker ??= await startWorkers(services(), { scopes: ['system'], concurrency: 2 })
    // Queued directly (as a job submitted before the move started would be): the lifecycle run refuses it.
    const job = await services().tasks.submit('tenants.delete', { tenantId: t.id, actorUserId: ops.id, hard: true }, { id: tenantDeleteJobId(t.id) })
    const refused = await waitFor(
      async () => {
        const [j] = await ctx.app.host.db.select().from(systemJobs).where(eq(systemJobs.id, job.id))
        return j && j.retryCount >= 1 ? j : undefined
      },
      { message: 'the delete job to meet the move', timeout: 25_000 },
    )
    expect(refused.errorLog).toContain(`is moving to shared on default (move ${moveId}`)
    expect(refused.status).not.toBe('completed')
    // The tenant, its database and its rows are all still there; the move then runs to its end.
    expect(await services().provisioner.writes.find(t.id)).toBeDefined()
    expect(await databaseExists(t.tenant.dbName)).toBe(true)
    const moved = await services().mover.run(moveId)
    expect(moved).toMatchObject({ state: 'done', step: 'done' })
    expect((await services().provisioner.writes.get(t.id)).isolation).toBe('shared')

    // The job's next attempt deletes the tenant from the shared database (its rows erased), not the dropped one.
    const done = await waitFor(
      async () => {
        const [j] = await ctx.app.host.db.select().from(systemJobs).where(eq(systemJobs.id, job.id))
        return j?.status === 'completed' || j?.status === 'failed' ? j : undefined
      },
      { message: 'the delete job to finish after the move', timeout: 60_000, interval: 250 },
    )
    expect(done).toMatchObject({ status: 'completed', result: { event: 'hardDeleted', outcome: 'done' } })
    expect(await services().provisioner.writes.find(t.id)).toBeUndefined()
    expect(await databaseExists(t.tenant.dbName)).toBe(false)
    // Counted as the postgres superuser, past row-level security: no row of the tenant is left anywhere.
    const all = connect(withDatabase(ADMIN_URL, services().provisioner.shared!.dbName), { max: 1 })
    try {
      const [r] = await all<{ n: number }[]>`select count(*)::int as n from projects where tenant_id = ${t.id}`
      expect(r!.n).toBe(0)
    } finally {
      await all.end()
    }
  }, 90_000)
})

describe('a moving tenant is not migrated under its move', () => {
  it('a fleet migration reports it failed (MOVE_IN_PROGRESS) and marks nothing; after the move is aborted it is migrated', async () => {
    const t = await tenantWith(ctx.app)
    const m = await services().mover.start(t.slug, { target: { isolation: 'shared' } })
    // Behind as after a deploy with a new tenant migration (the catalog says so; the database is current).
    await services().provisioner.writes.update(t.id, { migrationStatus: 'pending' })
    const deps = { host: ctx.app.host, catalog: services().catalog, pools: services().pools, config: ctx.env.config, logger: pino({ level: 'silent' }) }
    const refused = await migrateFleet(deps, { tenants: [t.slug] })
    expect(refused.results[0]).toMatchObject({ outcome: 'failed', error: expect.stringContaining(`is moving to shared on default (move ${m.id}`) })
    expect((await services().provisioner.writes.get(t.id)).migrationStatus).toBe('pending')
    await services().mover.abort(m.id)
    const done = await migrateFleet(deps, { tenants: [t.slug] })
    expect(done.results[0]).toMatchObject({ outcome: 'migrated' })
    expect((await services().provisioner.writes.get(t.id)).migrationStatus).toBe('current')
  })
})
