/**
 * Moving a tenant between isolation modes (issue 14, src/core/tenancy/move): database → shared and back
 * with rows in every tenant table, equal row by row (read through the tenant's own handle) and by checksum;
 * the old copy gone; writes refused with 503 TENANT_MOVING and Retry-After while reads go on (HTTP, the
 * handle, tenant jobs); a move killed before or after any step resumes and ends with nothing lost.
 */
import { randomUUID } from 'node:crypto'
import { asc, desc, eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantMoves, tenants } from '../../drizzle/host/schema.js'
import * as tenantSchema from '../../drizzle/tenant/schema.js'
import { connect, type Sql, withDatabase } from '../../src/core/db/connect.js'
import { checksumTenant, openEndpoint } from '../../src/core/tenancy/move/copy.js'
import { createTenantMover, type TenantMover } from '../../src/core/tenancy/move/index.js'
import { MOVE_STEPS, type RunnableStep } from '../../src/core/tenancy/move/mover.js'
import type { TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { ADMIN_URL, SHARED } from '../helpers/env.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

// Tenants start with a database of their own (the free plan's isolation would otherwise be shared).
const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
let t: TenantFixture
let admin: Sql
let truth: Sql

const services = () => ctx.app.services
const record = async (id: string): Promise<TenantRecord> => {
  const r = await services().catalog.get(id)
  if (!r) throw new Error(`no tenant ${id}`)
  return r
}
const withDb = async <T>(id: string, fn: (db: TenantDb) => Promise<T>) => services().pools.withTenant(await record(id), fn)

const TABLES = [
  tenantSchema.tenantUsers,
  tenantSchema.permissions,
  tenantSchema.settings,
  tenantSchema.tenantJobs,
  tenantSchema.projects,
  tenantSchema.webhookEndpoints,
  tenantSchema.webhookDeliveries,
] as const

/** Rows in every tenant table, through the tenant's handle (so in either mode). */
async function fill(id: string, n: number) {
  await withDb(id, async (db) => {
    const users = Array.from({ length: n }, (_, i) => ({
      id: randomUUID(),
      globalUserId: randomUUID(),
      email: `u${i}-${randomUUID()}@example.com`,
      name: i % 3 ? `User ${i}` : null,
      preferences: { theme: i % 2 ? 'dark' : 'light', n: i },
    }))
    await db.insert(tenantSchema.tenantUsers).values(users)
    await db
      .insert(tenantSchema.permissions)
      .values(users.map((u, i) => ({ tenantUserId: u.id, resource: 'projects', action: `a${i}`, granted: i % 2 === 0 })))
    await db.insert(tenantSchema.tenantJobs).values(
      Array.from({ length: n }, (_, i) => ({
        jobType: 'x.y',
        payload: { i, s: "quote ' and \\ slash" },
        result: i % 2 ? null : [i, 'r'],
        retryCount: i % 4,
        startedAt: new Date(Date.now() - i * 1000),
      })),
    )
    await db.insert(tenantSchema.projects).values(
      Array.from({ length: n }, (_, i) => ({
        name: `P ${i} ü 😀`,
        description: i % 2 ? null : 'line\nbreak',
        status: i % 5 ? ('active' as const) : ('archived' as const),
      })),
    )
    const endpoints = await db
      .insert(tenantSchema.webhookEndpoints)
      .values([
        { url: 'https://example.com/a', events: ['project.created', 'member.joined'], secretSealed: 'sealed-a' },
        { url: 'https://example.com/b', events: [], secretSealed: 'sealed-b', enabled: false },
      ])
      .returning()
    await db.insert(tenantSchema.webhookDeliveries).values(
      Array.from({ length: n }, (_, i) => ({
        endpointId: endpoints[i % 2]!.id,
        eventId: randomUUID(),
        eventType: 'project.created',
        payload: `{"i":${i}}`,
        attempts: i % 3,
        durationMs: i,
      })),
    )
    await db.update(tenantSchema.settings).set({ featureFlags: { beta: true }, timezone: 'Europe/Paris' })
  })
}

/** Every row of every tenant table, as the tenant's handle reads them (the ground truth the move must keep). */
const snapshot = (id: string) =>
  withDb(id, async (db) => {
    const out: Record<string, unknown[]> = {}
    for (const table of TABLES)
      out[(table as unknown as { [k: symbol]: string })[Symbol.for('drizzle:Name')]!] = await db.select().from(table).orderBy(asc(table.id))
    return out
  })

const counts = (snap: Record<string, unknown[]>) => Object.fromEntries(Object.entries(snap).map(([k, v]) => [k, v.length]))

/** The checksums of the tenant's current location. */
async function checksums(id: string) {
  const r = await record(id)
  const ep = openEndpoint(r.dbUrl, r.isolation === 'shared' ? r.id : undefined)
  try {
    return await checksumTenant(ep)
  } finally {
    await ep.close()
  }
}

const databaseExists = async (name: string) => (await admin`select 1 from pg_database where datname = ${name}`).length > 0
const sharedRowsOf = async (id: string) => {
  const [r] = await truth<
    { n: number }[]
  >`select (select count(*) from projects where tenant_id = ${id}) + (select count(*) from core_tenant_users where tenant_id = ${id}) + (select count(*) from tenant_jobs where tenant_id = ${id}) as n`
  return Number(r!.n)
}

beforeAll(async () => {
  t = await tenantWith(ctx.app, { project: 'first' })
  admin = connect(ADMIN_URL, { max: 1 })
  truth = connect(withDatabase(ADMIN_URL, `${ctx.env.name}_shared`), { max: 1 })
  await services().provisioner.shared!.ensure()
  await fill(t.id, 50)
})
afterAll(async () => {
  await admin?.end()
  await truth?.end()
})

describe('a move between modes', () => {
  it('database → shared: every row of every table arrives, checksums equal, the old database is dropped', async () => {
    const before = await record(t.id)
    expect(before.isolation).toBe('database')
    const rows = await snapshot(t.id)
    const sums = await checksums(t.id)
    expect(Object.values(counts(rows)).every((n) => n > 0)).toBe(true)

    const move = await services().mover.moveTenant(t.slug, { target: { isolation: 'shared' } })
    expect(move).toMatchObject({ state: 'done', step: 'done', fromIsolation: 'database', toIsolation: 'shared', error: null })
    expect(move.rowsCopied).toBe(Object.values(counts(rows)).reduce((a, b) => a + b, 0))

    const after = await record(t.id)
    expect(after).toMatchObject({ isolation: 'shared', dbName: `${ctx.env.name}_shared`, moving: false })
    expect(await snapshot(t.id)).toEqual(rows)
    expect(await checksums(t.id)).toEqual(sums)
    expect(move.verified).toEqual(sums)
    expect(await databaseExists(before.dbName)).toBe(false)
    // Writes work at once on the new location, stamped with the tenant by the database.
    const created = await t.as(t.editor).post('/projects', { name: 'after the move' })
    expect(created.statusCode, created.body).toBe(201)
    const [stamped] = await truth`select tenant_id from projects where id = ${created.json().id}`
    expect(stamped!.tenant_id).toBe(t.id)
    const [audited] = await ctx.app.host.sql`select metadata from sys_audit_logs where action = 'tenant.moved' and tenant_id = ${t.id}`
    expect(audited!.metadata).toMatchObject({ moveId: move.id, from: 'database', to: 'shared' })
  })

  it('shared → database: back in a database of its own, the shared rows deleted', async () => {
    const rows = await snapshot(t.id)
    const sums = await checksums(t.id)
    const move = await services().mover.moveTenant(t.id, { target: { isolation: 'database' } })
    expect(move).toMatchObject({ state: 'done', fromIsolation: 'shared', toIsolation: 'database' })
    const after = await record(t.id)
    expect(after).toMatchObject({ isolation: 'database', dbName: `${ctx.env.name}_${t.id.replaceAll('-', '')}`, moving: false })
    expect(await snapshot(t.id)).toEqual(rows)
    expect(await checksums(t.id)).toEqual(sums)
    expect(await sharedRowsOf(t.id)).toBe(0)
    expect((await t.as(t.viewer).get('/projects')).statusCode).toBe(200)
  })

  it('writes between the first copy and the pause arrive: the pause sends only the buckets they changed', async () => {
    await fill(t.id, 40)
    const lines: { level: number; msg: string; sent?: number; deleted?: number; rows?: number }[] = []
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) })
    let rows: Awaited<ReturnType<typeof snapshot>> | undefined
    const from = await record(t.id)
    const mover = moverWith(
      {
        // After the first copy, before the pause: the tenant keeps writing (inserts, updates, deletes, parent and child).
        afterStep: async (step) => {
          if (step !== 'prepare') return
          await withDb(t.id, async (db) => {
            // A filled user (the fixture's members have no permission rows) and its permission.
            const [grant] = await db.select().from(tenantSchema.permissions).limit(1)
            await db.delete(tenantSchema.permissions).where(eq(tenantSchema.permissions.tenantUserId, grant!.tenantUserId))
            await db.delete(tenantSchema.tenantUsers).where(eq(tenantSchema.tenantUsers.id, grant!.tenantUserId))
            const [renamed] = await db.select().from(tenantSchema.projects).limit(1)
            await db.update(tenantSchema.projects).set({ name: 'renamed during the move' }).where(eq(tenantSchema.projects.id, renamed!.id))
            await db.insert(tenantSchema.projects).values({ name: 'created during the move' })
            await db.update(tenantSchema.settings).set({ timezone: 'Asia/Tokyo' })
          })
          rows = await snapshot(t.id)
        },
      },
      logger,
    )
    try {
      const move = await mover.moveTenant(t.slug, { target: { isolation: from.isolation === 'shared' ? 'database' : 'shared' } })
      expect(move).toMatchObject({ state: 'done', error: null })
      expect(await snapshot(t.id)).toEqual(rows)
      const synced = lines.find((l) => l.msg === 'tenant move: target synced')
      expect(synced, JSON.stringify(lines.filter((l) => l.level >= 40))).toBeDefined()
      // A user and its permission deleted, a project renamed and one created, the settings row: a few buckets' rows.
      expect(synced!.deleted).toBe(2)
      expect(synced!.sent).toBeGreaterThanOrEqual(3)
      expect(synced!.sent).toBeLessThan(synced!.rows! / 4)
    } finally {
      await mover.close()
      // Back where it was, for the tests after this one.
      if ((await record(t.id)).isolation !== from.isolation) await services().mover.moveTenant(t.slug, { target: { isolation: from.isolation } })
    }
  })

  it('refuses a move to where the tenant is (409 MOVE_NOT_NEEDED) and an unknown server (400)', async () => {
    await expect(services().mover.start(t.slug, { target: { isolation: 'database' } })).rejects.toMatchObject({
      statusCode: 409,
      code: 'MOVE_NOT_NEEDED',
    })
    await expect(services().mover.start(t.slug, { target: { isolation: 'shared', server: 'nope' } })).rejects.toMatchObject({
      statusCode: 400,
      code: 'UNKNOWN_SERVER',
    })
  })
})

describe('while a move runs', () => {
  it('writes get 503 TENANT_MOVING with Retry-After, reads succeed, the handle is read-only', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    let paused!: () => void
    const reached = new Promise<void>((r) => {
      paused = r
    })
    const mover = moverWith({
      beforeStep: async (step) => {
        if (step === 'copy') {
          paused()
          await gate
        }
      },
    })
    try {
      const before = (await t.as(t.viewer).get('/projects')).json()
      const projectCount = () => withDb(t.id, async (db) => (await db.select().from(tenantSchema.projects)).length)
      const count = await projectCount()
      const running = mover.moveTenant(t.slug, { target: { isolation: 'shared' } })
      await reached
      expect((await record(t.id)).moving).toBe(true)

      const read = await t.as(t.viewer).get('/projects')
      expect(read.statusCode, read.body).toBe(200)
      expect(read.json()).toEqual(before)
      const write = await t.as(t.editor).post('/projects', { name: 'during the move' })
      expect(write.statusCode, write.body).toBe(503)
      expect(write.json()).toMatchObject({ statusCode: 503, code: 'TENANT_MOVING' })
      expect(write.headers['retry-after']).toBe('2')
      const del = await t.as(t.admin).delete(`/projects/${t.projectId}`)
      expect(del.statusCode).toBe(503)
      // The tenant's handle itself (a job's, a repository's) cannot write either.
      await expect(withDb(t.id, (db) => db.insert(tenantSchema.projects).values({ name: 'sneaky' }))).rejects.toMatchObject({
        cause: expect.objectContaining({ code: '25006' }),
      })
      expect(await projectCount()).toBe(count)

      release()
      const move = await running
      expect(move.state).toBe('done')
      const again = await t.as(t.editor).post('/projects', { name: 'after' })
      expect(again.statusCode, again.body).toBe(201)
    } finally {
      release()
      await mover.close()
    }
  })
})

describe('writes under way when the move starts', () => {
  // A request that leased the tenant's handle before the mark still holds it when the move begins.
  const sneak = (db: TenantDb, name: string) => db.insert(tenantSchema.projects).values({ name })
  const moving = () =>
    waitFor(async () => (await ctx.app.host.db.select({ m: tenants.movingSince }).from(tenants).where(eq(tenants.id, t.id)))[0]?.m)

  it('database: the move waits for the read-write lease to end, and what it wrote is moved', async () => {
    if ((await record(t.id)).isolation !== 'database') await services().mover.moveTenant(t.id, { target: { isolation: 'database' } })
    const lease = await services().pools.acquire(await record(t.id))
    const running = services().mover.moveTenant(t.id, { target: { isolation: 'shared' } })
    try {
      await moving()
      // Still read-write: the drain waits for this connection rather than cutting it off.
      await sneak(lease.db, 'written while the move waited')
    } finally {
      lease.release()
    }
    const move = await running
    expect(move.state).toBe('done')
    const names = await withDb(t.id, async (db) => (await db.select().from(tenantSchema.projects)).map((p) => p.name))
    expect(names).toContain('written while the move waited')
  })

  it('shared: a handle leased before the mark turns read-only', async () => {
    const landed: string[] = []
    const refused: string[] = []
    expect((await record(t.id)).isolation).toBe('shared')
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const mover = moverWith({
      beforeStep: async (step) => {
        if (step === 'copy') await gate
      },
    })
    const lease = await services().pools.acquire(await record(t.id))
    try {
      const running = mover.moveTenant(t.id, { target: { isolation: 'database' } })
      await moving()
      // Until the flip reaches this process a write may still land (the switch's re-check carries it over);
      // once it has, writes are refused as read-only. Each attempt has its own name so both can be checked.
      let attempt = 0
      await waitFor(async () => {
        const name = `too late ${++attempt}`
        try {
          await sneak(lease.db, name)
          landed.push(name)
          return false
        } catch (err) {
          expect(err).toMatchObject({ cause: expect.objectContaining({ code: '25006' }) })
          refused.push(name)
          return true
        }
      })
      // Reads through it go on.
      expect((await lease.db.select().from(tenantSchema.projects)).length).toBeGreaterThan(0)
      lease.release()
      release()
      expect((await running).state).toBe('done')
    } finally {
      lease.release()
      release()
      await mover.close()
    }
    const names = await withDb(t.id, async (db) => (await db.select().from(tenantSchema.projects)).map((p) => p.name))
    expect(refused.length).toBe(1)
    expect(names).not.toContain(refused[0])
    for (const name of landed) expect(names).toContain(name)
  })
})

describe('a move killed at any step', () => {
  // Alternating directions: each move starts from where the last one left the tenant.
  const kills: [RunnableStep, 'before' | 'after'][] = [
    ...MOVE_STEPS.map((s) => [s, 'after'] as [RunnableStep, 'after']),
    ['mark', 'before'],
    ['switch', 'before'],
    ['cleanup', 'before'],
  ]
  for (const [step, when] of kills) {
    it(`resumes after a crash ${when} ${step}: completes, nothing lost`, async () => {
      const from = await record(t.id)
      const target = from.isolation === 'shared' ? 'database' : 'shared'
      await fill(t.id, 3)
      const rows = await snapshot(t.id)
      const sums = await checksums(t.id)
      let armed = true
      const crash = (s: RunnableStep) => {
        if (armed && s === step) {
          armed = false
          throw new Error(`simulated crash ${when} ${step}`)
        }
      }
      const mover = moverWith(when === 'before' ? { beforeStep: crash } : { afterStep: crash })
      try {
        await expect(mover.moveTenant(t.slug, { target: { isolation: target } })).rejects.toThrow(/simulated crash/)
        const [latest] = await ctx.app.host.db
          .select()
          .from(tenantMoves)
          .where(eq(tenantMoves.tenantId, t.id))
          .orderBy(desc(tenantMoves.id))
          .limit(1)
        expect(latest).toMatchObject({ toIsolation: target })
        // Resumed by a fresh run (another process would do the same: everything is in the move's row).
        const resumed = await mover.run(latest!.id)
        expect(resumed).toMatchObject({ state: 'done', toIsolation: target })
      } finally {
        await mover.close()
      }
      const after = await record(t.id)
      expect(after).toMatchObject({ isolation: target, moving: false })
      expect(await snapshot(t.id)).toEqual(rows)
      expect(await checksums(t.id)).toEqual(sums)
      if (from.isolation === 'database') expect(await databaseExists(from.dbName)).toBe(false)
      else expect(await sharedRowsOf(t.id)).toBe(0)
      const [row] = await ctx.app.host.db.select({ movingSince: tenants.movingSince }).from(tenants).where(eq(tenants.id, t.id))
      expect(row!.movingSince).toBeNull()
    })
  }
})

describe('aborting', () => {
  it('a move not yet switched: the target copy removed, writes resume on the source', async () => {
    const from = await record(t.id)
    const target = from.isolation === 'shared' ? 'database' : 'shared'
    const mover = moverWith({
      afterStep: (s) => {
        if (s === 'verify') throw new Error('stop here')
      },
    })
    try {
      const started = await mover.start(t.slug, { target: { isolation: target } })
      await expect(mover.run(started.id)).rejects.toThrow(/stop here/)
      expect((await record(t.id)).moving).toBe(true)
      const aborted = await mover.abort(started.id)
      expect(aborted).toMatchObject({ state: 'failed' })
      expect(await record(t.id)).toMatchObject({ isolation: from.isolation, moving: false })
      if (target === 'database') expect(await databaseExists(started.toDbName)).toBe(false)
      else expect(await sharedRowsOf(t.id)).toBe(0)
      expect((await t.as(t.editor).post('/projects', { name: 'after abort' })).statusCode).toBe(201)
    } finally {
      await mover.close()
    }
  })
})

function moverWith(faults: Parameters<typeof createTenantMover>[0]['faults'], logger = pino({ level: 'silent' })): TenantMover {
  const s = services()
  return createTenantMover({
    config: s.config,
    host: s.host,
    catalog: s.catalog,
    pools: s.pools,
    provisioner: s.provisioner,
    tasks: s.tasks,
    logger,
    faults,
  })
}
