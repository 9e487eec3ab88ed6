/**
 * Shared isolation (issue 14): tenants whose rows live in one shared database under FORCED row-level
 * security, reached through the same TenantDb handle as a database tenant. What must hold: a forgotten
 * tenant setting sees no row (never all rows); tenant A's handle cannot read, change or delete B's rows
 * even with hand-written SQL; rows are stamped by the database; a pooled connection never keeps a tenant
 * id; the layout is made mechanically from the tenant migrations (idempotently); provisioning, suspend,
 * fleet migration and erasure (verified) work for a shared tenant.
 */
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditLogs, memberships, systemJobs } from '../../drizzle/host/schema.js'
import { projects, tenantUsers } from '../../drizzle/tenant/schema.js'
import { connect, type Sql, withDatabase } from '../../src/core/db/connect.js'
import { migrateFleet } from '../../src/core/tenancy/fleet.js'
import { createPoolManager } from '../../src/core/tenancy/pool-manager.js'
import { createScopedClient, createUnitLanes } from '../../src/core/tenancy/shared/scoped-client.js'
import { sharedify } from '../../src/core/tenancy/shared/sharedify.js'
import type { TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { createServices, type Services } from '../../src/services.js'
import { tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager } from '../../src/core/jobs/task-manager.js'
import { Type } from 'typebox'
import { settled } from '../jobs/helpers.js'
import { SHARED_ROLE } from '../helpers/env.js'
import { type SharedWorld, sharedWorld } from '../helpers/shared-world.js'
import type { TestEnv } from '../helpers/test-env.js'
import { welcomeEmailJobId } from '../../src/features/tenants/welcome-email.js'

let world: SharedWorld
let env: TestEnv
let services: Services
/** The shared database as its data role, with no tenant set: what a forgotten set_config would see. */
let raw: Sql
/** The shared database as a superuser (row-level security does not apply): the ground truth. */
let truth: Sql
let A: TenantRecord
let B: TenantRecord
let owner: string

const record = async (slug: string) => {
  const r = await services.catalog.get(slug)
  if (!r) throw new Error(`no tenant ${slug}`)
  return r
}
const as = <T>(t: TenantRecord, fn: (db: TenantDb) => Promise<T>) => services.pools.withTenant(t, fn)

beforeAll(async () => {
  world = await sharedWorld({ 'shared-a': 'shared', 'shared-b': 'shared' })
  ;({ env, services, owner, truth } = world)
  A = world.tenants['shared-a']!
  B = world.tenants['shared-b']!
  raw = connect(env.config.sharedDatabaseUrl!, { max: 1 })
})
afterAll(async () => {
  await raw?.end()
  await world?.close()
})

describe('the shared layout', () => {
  it('records the mode in the catalog; both tenants name the one shared database', async () => {
    expect(A).toMatchObject({ isolation: 'shared', dbName: `${env.name}_shared`, status: 'active', migrationStatus: 'current' })
    expect(B.dbName).toBe(A.dbName)
  })

  it('forces row-level security on every tenant table, and the data role owns none and bypasses nothing', async () => {
    const tables = await truth<{ t: string; forced: boolean; on: boolean; owner: string }[]>`
      select c.relname as t, c.relrowsecurity as on, c.relforcerowsecurity as forced, pg_get_userbyid(c.relowner) as owner
      from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'`
    expect(tables.map((t) => t.t).sort()).toEqual(['core_permissions', 'core_settings', 'core_tenant_users', 'projects', 'tenant_jobs', 'webhook_deliveries', 'webhook_endpoints'])
    for (const t of tables) expect(t, t.t).toMatchObject({ on: true, forced: true })
    expect(tables.every((t) => t.owner !== SHARED_ROLE)).toBe(true)
    const [role] = await truth`select rolsuper, rolbypassrls from pg_roles where rolname = ${SHARED_ROLE}`
    expect(role).toEqual({ rolsuper: false, rolbypassrls: false })
    // Keys and indexes lead with tenant_id: a global user is unique per tenant, not across the database.
    const [fk] = await truth`select pg_get_constraintdef(oid) as def from pg_constraint where conname = 'core_permissions_tenant_user_id_core_tenant_users_id_fk'`
    expect(fk!.def).toBe('FOREIGN KEY (tenant_id, tenant_user_id) REFERENCES core_tenant_users(tenant_id, id) ON DELETE CASCADE')
    const [uq] = await truth`select indexdef from pg_indexes where indexname = 'core_tenant_users_global_uq'`
    expect(uq!.indexdef).toContain('(tenant_id, global_user_id)')
  })

  it('sharedify is idempotent: a second run changes nothing', async () => {
    const owner = connect(withDatabase(env.config.tenantDatabaseUrl!, `${env.name}_shared`), { max: 1 })
    try {
      expect((await sharedify(owner, SHARED_ROLE)).changes).toEqual([])
    } finally {
      await owner.end()
    }
  })
})

describe('a forgotten tenant setting', () => {
  it('returns no rows, never all rows, and cannot write', async () => {
    await as(A, (db) => db.insert(projects).values({ id: crypto.randomUUID(), name: 'a-visible' }))
    expect((await truth`select count(*)::int as n from projects`)[0]!.n).toBeGreaterThan(0)
    // Never set in this session, then set to '' by an ended transaction: both read as no tenant.
    expect(await raw`select * from projects`).toEqual([])
    await raw.begin((tx) => tx`select set_config('app.tenant_id', ${A.id}, true)`)
    expect((await raw`select current_setting('app.tenant_id', true) as v`)[0]!.v).toBe('')
    expect(await raw`select * from projects`).toEqual([])
    expect(await raw`select * from core_tenant_users`).toEqual([])
    // tenant_id comes from the setting: with none, the insert fails rather than writing an orphan row.
    await expect(raw`insert into projects (id, name) values (${crypto.randomUUID()}, 'orphan')`).rejects.toMatchObject({ code: expect.stringMatching(/^(42501|23502)$/) })
    expect(await raw`update projects set name = 'x'`).toHaveProperty('count', 0)
    expect(await raw`delete from projects`).toHaveProperty('count', 0)
  })
})

describe('tenant A through its handle', () => {
  it('sees only its rows; tenant_id is stamped by the database, not by the caller', async () => {
    const aId = crypto.randomUUID()
    const bId = crypto.randomUUID()
    await as(A, (db) => db.insert(projects).values({ id: aId, name: 'a-1' }))
    await as(B, (db) => db.insert(projects).values({ id: bId, name: 'b-1' }))
    const [stamped] = await truth`select tenant_id from projects where id = ${aId}`
    expect(stamped!.tenant_id).toBe(A.id)
    const seenByA = await as(A, (db) => db.select().from(projects))
    expect(seenByA.map((p) => p.id)).toContain(aId)
    expect(seenByA.map((p) => p.id)).not.toContain(bId)
    expect(await as(A, (db) => db.select().from(projects).where(eq(projects.id, bId)))).toEqual([])
    // The owner seeded by provisioning: one per tenant, same global user in both (unique per tenant only).
    expect(await as(A, (db) => db.select({ g: tenantUsers.globalUserId }).from(tenantUsers))).toEqual([{ g: owner }])
    expect(await as(B, (db) => db.select({ g: tenantUsers.globalUserId }).from(tenantUsers))).toEqual([{ g: owner }])
  })

  it('cannot read, update or delete B’s rows with hand-written SQL, nor write a row into B', async () => {
    const bId = crypto.randomUUID()
    await as(B, (db) => db.$client`insert into projects (id, name) values (${bId}, 'b-secret')`)
    const before = (await truth`select count(*)::int as n from projects where tenant_id = ${B.id}`)[0]!.n
    await as(A, async (db) => {
      const sql = db.$client
      expect(await sql`select * from projects where id = ${bId}`).toEqual([])
      expect(await sql`select * from projects where tenant_id = ${B.id}`).toEqual([])
      expect(await sql.unsafe(`select count(*)::int as n from projects where name = 'b-secret'`)).toEqual([{ n: 0 }])
      expect(await sql`update projects set name = 'stolen' where id = ${bId}`).toHaveProperty('count', 0)
      // Moving its own rows into B: WITH CHECK refuses.
      await expect(sql`update projects set tenant_id = ${B.id}`).rejects.toMatchObject({ code: '42501' })
      await sql`delete from projects` // every row A can see: its own
      await expect(sql`insert into projects (tenant_id, id, name) values (${B.id}, ${crypto.randomUUID()}, 'planted')`).rejects.toMatchObject({
        code: '42501',
      })
      // The handle may not move itself to another tenant.
      expect(() => sql`select set_config('app.tenant_id', ${B.id}, true)`).toThrow(/app.tenant_id/)
      expect(() => sql.unsafe(`select set_config('app.tenant_id', '${B.id}', false)`)).toThrow(/app.tenant_id/)
      await expect(db.transaction(async (tx) => tx.execute(`select set_config('app.tenant_id', '${B.id}', true)`))).rejects.toThrow(/app.tenant_id/)
    })
    expect((await truth`select count(*)::int as n from projects where tenant_id = ${B.id}`)[0]!.n).toBe(before)
    expect((await truth`select name from projects where id = ${bId}`)[0]!.name).toBe('b-secret')
    expect((await truth`select count(*)::int as n from projects where tenant_id = ${A.id}`)[0]!.n).toBe(0)
  })

  it('runs drizzle transactions scoped to the tenant, and rolls back on error', async () => {
    const id = crypto.randomUUID()
    await expect(
      as(A, (db) =>
        db.transaction(async (tx) => {
          await tx.insert(projects).values({ id, name: 'tx' })
          expect((await tx.select().from(projects).where(eq(projects.id, id))).length).toBe(1)
          throw new Error('roll back')
        }),
      ),
    ).rejects.toThrow('roll back')
    expect(await truth`select 1 from projects where id = ${id}`).toEqual([])
    await as(A, (db) => db.transaction((tx) => tx.insert(projects).values({ id, name: 'tx' })))
    expect((await truth`select tenant_id from projects where id = ${id}`)[0]!.tenant_id).toBe(A.id)
  })

  it('a failing statement rolls back its unit and the connection goes back clean', async () => {
    const pool = connect(env.config.sharedDatabaseUrl!, { max: 1 })
    try {
      const a = createScopedClient(pool, A.id)
      const id = crypto.randomUUID()
      await a`insert into projects (id, name) values (${id}, 'once')`
      await expect(a`insert into projects (id, name) values (${id}, 'twice')`).rejects.toMatchObject({ code: '23505' })
      // Concurrent units on one connection queue up; each sees its own tenant.
      const b = createScopedClient(pool, B.id)
      const [ra, rb] = await Promise.all([a`select count(*)::int as n from projects where id = ${id}`, b`select count(*)::int as n from projects where id = ${id}`])
      expect([ra![0]!.n, rb![0]!.n]).toEqual([1, 0])
      // The pool's only connection, after all that: no tenant, no open transaction.
      const [state] = await pool`select coalesce(current_setting('app.tenant_id', true), '') as v`
      expect(state).toEqual({ v: '' })
      await expect(pool.unsafe('savepoint still_open')).rejects.toMatchObject({ code: '25P01' }) // no transaction block
    } finally {
      await pool.end()
    }
  })
})

describe('statement lanes', () => {
  it('carry drizzle statements prepared (an unprepared one holds its lane for three round trips)', async () => {
    const pool = connect(env.config.sharedDatabaseUrl!, { max: 1 })
    const lanes = createUnitLanes(pool, 1)
    try {
      const a = createScopedClient(pool, A.id, lanes)
      // As drizzle sends a statement with parameters: unsafe(text, params), unprepared by default.
      const text = 'select count(*)::int as n from projects where name <> $1'
      const [ra, rb] = await Promise.all([a.unsafe(text, ['x']), a.unsafe(text, ['y'])])
      expect(ra).toEqual(rb)
      // The lane's connection (the pool's only one) has it prepared.
      expect(await a.unsafe('select count(*)::int as n from pg_prepared_statements where statement = $1', [text])).toEqual([{ n: 1 }])
    } finally {
      lanes.close()
      await pool.end()
    }
  })

  it('a prepared statement gone stale (a migration changed its result) runs again in a unit of its own, never in the next one', async () => {
    await truth.unsafe(`create table stale_probe (id int primary key, tenant_id uuid not null default nullif(current_setting('app.tenant_id', true), '')::uuid)`)
    try {
      await truth.unsafe(`alter table stale_probe enable row level security; alter table stale_probe force row level security;
        create policy p on stale_probe using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid) with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
        grant select, insert on stale_probe to ${SHARED_ROLE}`)
      await truth`insert into stale_probe (id, tenant_id) values (1, ${A.id}), (2, ${B.id})`
      const pool = connect(env.config.sharedDatabaseUrl!, { max: 2 })
      // One lane: A's and B's units follow each other on one connection.
      const lanes = createUnitLanes(pool, 1)
      try {
        const a = createScopedClient(pool, A.id, lanes)
        const b = createScopedClient(pool, B.id, lanes)
        expect(await a`select * from stale_probe where id > ${0}`).toEqual([{ id: 1, tenant_id: A.id }])
        // What a migration does: the prepared `select *` now returns another row type (postgres.js: RevalidateCachedQuery).
        await truth.unsafe('alter table stale_probe add column extra int')
        const [ra, rb] = await Promise.all([a`select * from stale_probe where id > ${0}`, b`select * from stale_probe where id > ${0}`])
        expect(ra).toEqual([{ id: 1, tenant_id: A.id, extra: null }])
        expect(rb).toEqual([{ id: 2, tenant_id: B.id, extra: null }])
      } finally {
        lanes.close()
        await pool.end()
      }
    } finally {
      await truth.unsafe('drop table stale_probe')
    }
  })
})

describe('the shared pool', () => {
  it('is one pool for every shared tenant, counted in the connection budget like a tenant pool', async () => {
    const pools = createPoolManager({ maxPerTenant: 5, maxTenants: 10, idleTimeoutS: 60, connectionBudget: 12, acquireTimeoutMs: 200, sharedMax: 10 })
    try {
      const a = await pools.acquire(A)
      const b = await pools.acquire(B)
      expect(pools.stats()).toMatchObject({ openPools: 1, reservedConnections: 10, leases: 2 })
      expect(await a.db.select({ id: projects.id }).from(projects).where(eq(projects.name, 'b-1'))).toEqual([])
      // A database tenant's pool of 5 does not fit beside it (10 + 5 > 12) while shared tenants hold leases.
      const own = { id: crypto.randomUUID(), dbUrl: 'postgres://nobody@127.0.0.1:1/none', poolerUrl: undefined, maxConnections: undefined }
      await expect(pools.acquire(own)).rejects.toMatchObject({ code: 'POOL_EXHAUSTED' })
      a.release()
      b.release()
      // Idle now: the shared pool is closed to make room (its lanes go back first, so it ends promptly).
      const lease = await pools.acquire(own)
      expect(pools.stats()).toMatchObject({ openPools: 1, reservedConnections: 5 })
      lease.release()
    } finally {
      await pools.close()
    }
  })
})

describe('jobs of shared tenants', () => {
  it('run with the tenant’s handle: each job sees only its tenant’s rows, and its record is in its tenant’s rows', async () => {
    const registry = {
      'test.shared': tenantJob({
        payload: { marker: Type.String() },
        maxRetries: 0,
        async process(ctx, p) {
          await ctx.db.insert(projects).values({ id: crypto.randomUUID(), name: `job-${p.marker}` })
          const names = (await ctx.db.select({ name: projects.name }).from(projects)).map((r) => r.name)
          return { jobNames: names.filter((n) => n.startsWith('job-')) }
        },
      }),
    }
    const tasks = createTaskManager({ registry, deps: {}, ...services, config: env.config, logger: pino({ level: 'silent' }) })
    const workers = tasks.startWorkers({ scopes: ['tenant'], concurrency: 4 })
    try {
      await workers.ready()
      const jobs = await Promise.all([A, B].map(async (t) => ({ t, job: await tasks.submit('test.shared', { tenantId: t.id, marker: t.slug }) })))
      for (const { t, job } of jobs) {
        const view = await settled(tasks, job.id, { tenantId: t.id })
        expect(view.status, view.errorLog ?? '').toBe('completed')
        expect(view.result).toEqual({ jobNames: [`job-${t.slug}`] })
        // The job record (tenant_jobs) is the tenant's row, invisible to the other tenant.
        const other = t === A ? B : A
        expect((await truth`select tenant_id from tenant_jobs where id = ${job.id}`)[0]!.tenant_id).toBe(t.id)
        await expect(tasks.getJob(job.id, { tenantId: other.id })).rejects.toMatchObject({ statusCode: 404 })
      }
    } finally {
      await workers.close()
      await tasks.close()
    }
  })
})

describe('a shared tenant’s lifecycle', () => {
  it('provisions as a catalog row plus rows, suspends, and migrates with the fleet', async () => {
    const t = await services.provisioner.provision({ slug: 'shared-c', name: 'C', ownerUserId: owner, isolation: 'shared' })
    expect(t).toMatchObject({ isolation: 'shared', status: 'active' })
    // No database of its own.
    expect(await truth`select 1 from pg_database where datname like ${`${env.name}_0%`}`).toEqual([])
    expect(await services.provisioner.run('suspended', 'shared-c')).toBe('done')
    expect((await record('shared-c')).status).toBe('suspended')
    expect(await services.provisioner.run('resumed', 'shared-c')).toBe('done')

    await services.provisioner.writes.update(t.id, { migrationStatus: 'pending', migrationVersion: null })
    const summary = await migrateFleet(
      { host: services.host, catalog: services.catalog, pools: services.pools, config: env.config, logger: pino({ level: 'silent' }), shared: services.provisioner.shared },
      { tenants: ['shared-c'] },
    )
    expect(summary).toMatchObject({ migrated: 1, failed: 0 })
    expect((await services.provisioner.writes.get('shared-c')).migrationStatus).toBe('current')
  })

  it('registers in one write (catalog row, membership, audit entry) and runs the lifecycle on it: the rows and refusals of register()', async () => {
    const t = await services.provisioner.provision({
      slug: 'shared-d',
      name: ' D ',
      ownerUserId: owner,
      isolation: 'shared',
      origin: { ip: '203.0.113.9', userAgent: 'probe' },
    })
    const row = await services.provisioner.writes.get('shared-d')
    expect(row).toMatchObject({
      id: t.id,
      name: 'D',
      planTier: 'free',
      isolation: 'shared',
      server: 'default',
      status: 'active',
      dbName: `${env.name}_shared`,
      provisionStep: null,
      provisionError: null,
      migrationStatus: 'current',
      migrationVersion: services.provisioner.shared!.info.version,
      createdBy: owner,
      deletedAt: null,
    })
    expect(row.createdAt).toBeInstanceOf(Date)
    expect(row.migratedAt).toBeInstanceOf(Date)
    expect(services.provisioner.writes.dbUrl(row)).toBe(env.config.sharedDatabaseUrl)
    expect(await services.host.db.select({ role: memberships.role }).from(memberships).where(eq(memberships.tenantId, t.id))).toEqual([{ role: 'owner' }])
    const entries = await services.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, t.id))
    expect(entries.find((e) => e.action === 'tenant.created')).toMatchObject({
      actorUserId: owner,
      targetType: 'tenant',
      targetId: t.id,
      ip: '203.0.113.9',
      userAgent: 'probe',
      metadata: { slug: 'shared-d', planTier: 'free', isolation: 'shared', server: 'default', ownerUserId: owner },
    })
    expect(entries.map((e) => e.action)).toContain('tenant.provisioned')
    // The lifecycle ran on it: the owner seeded in the shared tables, the welcome email queued, the tenant lock given back.
    expect(await as(await record('shared-d'), (db) => db.select({ g: tenantUsers.globalUserId }).from(tenantUsers))).toEqual([{ g: owner }])
    expect(await services.host.db.select({ id: systemJobs.id }).from(systemJobs).where(eq(systemJobs.id, welcomeEmailJobId(t.id)))).toHaveLength(1)
    expect(await services.provisioner.run('suspended', 'shared-d')).toBe('done')

    const refused = (input: Partial<Parameters<Services['provisioner']['provision']>[0]>) =>
      services.provisioner.provision({ slug: 'shared-e', name: 'E', ownerUserId: owner, isolation: 'shared', ...input })
    await expect(refused({ slug: 'shared-d' })).rejects.toMatchObject({ statusCode: 409, code: 'SLUG_TAKEN' })
    // A live alias of another tenant's former slug holds it.
    await services.host.sql`insert into core_tenant_slug_aliases (slug, tenant_id, expires_at) values ('shared-old', ${t.id}, now() + interval '1 day')`
    await expect(refused({ slug: 'shared-old' })).rejects.toMatchObject({ statusCode: 409, code: 'SLUG_TAKEN' })
    await expect(refused({ ownerUserId: crypto.randomUUID() })).rejects.toMatchObject({ statusCode: 400, code: 'UNKNOWN_OWNER' })
    await expect(refused({ maxCreatedByOwner: 1 })).rejects.toMatchObject({ statusCode: 403, code: 'TENANT_QUOTA_EXCEEDED' })
    expect(await services.provisioner.writes.find('shared-old')).toBeUndefined()
    expect(await services.provisioner.writes.find('shared-e')).toBeUndefined()
    // Under the quota it goes through.
    expect(await refused({ maxCreatedByOwner: 100 })).toMatchObject({ slug: 'shared-e', status: 'active' })
  })

  it('hard delete erases every row of the tenant (verified) and leaves the others’', async () => {
    await as(A, (db) => db.insert(projects).values({ id: crypto.randomUUID(), name: 'a-doomed' }))
    const bRows = (await truth`select count(*)::int as n from projects where tenant_id = ${B.id}`)[0]!.n
    expect(await services.provisioner.run('hardDeleted', 'shared-a')).toBe('done')
    const left = await truth`
      select (select count(*) from projects where tenant_id = ${A.id})::int + (select count(*) from core_tenant_users where tenant_id = ${A.id})::int
        + (select count(*) from core_settings where tenant_id = ${A.id})::int + (select count(*) from tenant_jobs where tenant_id = ${A.id})::int
        + (select count(*) from core_permissions where tenant_id = ${A.id})::int as n`
    expect(left[0]!.n).toBe(0)
    expect((await truth`select count(*)::int as n from projects where tenant_id = ${B.id}`)[0]!.n).toBe(bRows)
    expect(await services.catalog.get('shared-a')).toBeUndefined()
    const actions = (await services.host.db.select().from(auditLogs).where(eq(auditLogs.tenantId, A.id))).map((r) => r.action)
    expect(actions).toContain('tenant.hard_deleted')
  })

  it('asking for shared isolation where none is configured is a 400', async () => {
    const plain = createServices(env.configWith({ SHARED_DATABASE_URL: '' }), pino({ level: 'silent' }))
    try {
      await expect(plain.provisioner.register({ slug: 'nope-shared', name: 'N', isolation: 'shared' })).rejects.toMatchObject({
        statusCode: 400,
        code: 'SHARED_ISOLATION_OFF',
      })
      // A plan that asks for shared gets a database of its own there.
      const t = await plain.provisioner.register({ slug: 'plan-free', name: 'F', planTier: 'free' })
      expect(t.isolation).toBe('database')
    } finally {
      await plain.close()
    }
  })

  it('the plan decides when nothing is named (config/plans.json: free → shared, enterprise → database)', async () => {
    const free = await services.provisioner.register({ slug: 'plan-free-s', name: 'F', planTier: 'free' })
    const ent = await services.provisioner.register({ slug: 'plan-ent', name: 'E', planTier: 'enterprise' })
    expect([free.isolation, ent.isolation]).toEqual(['shared', 'database'])
  })
})
