/**
 * Tenants behind a real PgBouncer (1.18, Debian bookworm; transaction pooling; .ci/pgbouncer): a catalog row's
 * pooler URL points at it. What must hold: a database tenant's reads (prepared repository statements) and
 * transactional writes work from two processes at once; shared tenants interleaving on the same pooled
 * server connections never see each other's rows; a moving tenant's read-only pool goes past the pooler; a
 * tenant job reaches both kinds of tenant through it. PgBouncer 1.18 keeps no named prepared statement across
 * transactions and refuses startup parameters such as statement_timeout (the kit's default 30 s): the pools
 * opened through a pooler go unnamed and without them, which is what each of these needs to pass.
 */
import { eq, sql } from 'drizzle-orm'
import { pino } from 'pino'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import { projects } from '../../drizzle/tenant/schema.js'
import { connect, type Sql } from '../../src/core/db/connect.js'
import { tenantJob } from '../../src/core/jobs/registry.js'
import { createTaskManager } from '../../src/core/jobs/task-manager.js'
import { encrypt } from '../../src/core/lib/crypto.js'
import { createPoolManager, READ_ONLY_APPLICATION } from '../../src/core/tenancy/pool-manager.js'
import { describeServers, serverAdminDeps, setServerPooler } from '../../src/core/tenancy/server-admin.js'
import type { PoolManager, TenantDb, TenantRecord } from '../../src/core/tenancy/types.js'
import { createProjectsRepository } from '../../src/features/projects/repository.js'
import { createServices, type Services } from '../../src/services.js'
import { ensurePgBouncer, PGBOUNCER_PORT, pgbouncerConsole, viaPgBouncer } from '../helpers/pgbouncer.js'
import { type SharedWorld, sharedWorld } from '../helpers/shared-world.js'
import type { TestEnv } from '../helpers/test-env.js'
import { settled } from '../jobs/helpers.js'
import { waitFor } from '../helpers/wait-for.js'

const unavailable = await ensurePgBouncer()
if (unavailable) console.warn(`skipping the PgBouncer tests: ${unavailable}`)

describe.skipIf(unavailable)('tenants behind PgBouncer (transaction pooling)', () => {
  let world: SharedWorld
  let env: TestEnv
  let services: Services
  /** A second process' pool manager over the same catalog rows. */
  let other: PoolManager
  let console_: Sql
  /** The shared database as a superuser (row-level security does not apply): the ground truth. */
  let truth: Sql
  let D: TenantRecord
  let A: TenantRecord
  let B: TenantRecord
  let version: string

  const record = (slug: string) => world.record(slug)
  /** Point a tenant's catalog row at PgBouncer (its direct URL with PgBouncer's port), as an operator would. */
  async function behindPooler(t: TenantRecord): Promise<TenantRecord> {
    await services.host.db
      .update(tenants)
      .set({ poolerUrlEncrypted: encrypt(viaPgBouncer(t.dbUrl), env.config.encryptionKeys) })
      .where(eq(tenants.id, t.id))
    await services.catalog.invalidate(t.id)
    return record(t.slug)
  }
  /** PgBouncer's clients on a database (SHOW CLIENTS): who is connected through it. */
  async function clientsOn(database: string): Promise<{ user: string; application_name: string }[]> {
    const rows = await console_.unsafe<{ database: string; user: string; application_name: string }[]>('show clients')
    return rows.filter((r) => r.database === database)
  }
  const newManager = (overrides: { poolerPreparedStatements?: boolean } = {}) =>
    createPoolManager({
      maxPerTenant: 4,
      maxTenants: 10,
      idleTimeoutS: 60,
      connectionBudget: 20,
      acquireTimeoutMs: 10_000,
      sharedMax: 6,
      connectOptions: env.config.pool,
      poolerPreparedStatements: env.config.pool.poolerPreparedStatements,
      ...overrides,
    })

  beforeAll(async () => {
    world = await sharedWorld({ 'pgb-d': 'database', 'pgb-a': 'shared', 'pgb-b': 'shared' })
    ;({ env, services, truth } = world)
    D = await behindPooler(world.tenants['pgb-d']!)
    A = await behindPooler(world.tenants['pgb-a']!)
    B = await behindPooler(world.tenants['pgb-b']!)
    other = newManager()
    console_ = pgbouncerConsole()
    const [v] = await console_.unsafe<{ version: string }[]>('show version')
    version = v!.version
  })
  afterAll(async () => {
    await other?.close()
    await console_?.end()
    await world?.close()
  })

  it('reads the pooler URL from the catalog, with the kit’s default statement_timeout configured', () => {
    expect(D.poolerUrl).toBe(viaPgBouncer(D.dbUrl))
    expect(A.poolerUrl).toBe(B.poolerUrl)
    // The default DB_STATEMENT_TIMEOUT_MS: a startup parameter PgBouncer refuses (08P01), so pools through it leave it out.
    expect(env.config.pool.statementTimeoutMs).toBeGreaterThan(0)
    expect(env.config.pool.poolerPreparedStatements).toBe(false)
  })

  it('a database tenant: prepared reads and transactional writes from two processes at once go through PgBouncer', async () => {
    const write = (pools: PoolManager, i: number) =>
      pools.withTenant(D, async (db) => {
        const made = await db.transaction(async (tx) => {
          const [row] = await tx.insert(projects).values({ name: `d-${i}` }).returning()
          // Prepared (drizzle .prepare()) inside the transaction, then outside it: both travel unnamed.
          const again = await createProjectsRepository(tx as unknown as TenantDb).findById(row!.id)
          const [count] = await tx.select({ id: projects.id }).from(projects).where(eq(projects.id, row!.id))
          return { row: row!, again, count }
        })
        expect(made.again?.name).toBe(`d-${i}`)
        expect(made.count?.id).toBe(made.row.id)
        return (await createProjectsRepository(db).findById(made.row.id))?.name
      })
    const names = await Promise.all(Array.from({ length: 60 }, (_, i) => write(i % 2 ? services.pools : other, i)))
    expect(names).toEqual(Array.from({ length: 60 }, (_, i) => `d-${i}`))
    const all = await services.pools.withTenant(D, (db) => db.select({ name: projects.name }).from(projects))
    expect(all.filter((r) => r.name.startsWith('d-'))).toHaveLength(60)
    // Both processes' pools are PgBouncer's clients on the tenant's database.
    const clients = await clientsOn(D.dbName)
    expect(clients.length).toBeGreaterThanOrEqual(2)
    expect(new Set(clients.map((c) => c.application_name))).toEqual(new Set(['tenantkit-tenant']))
  })

  it(`named prepared statements through PgBouncer < 1.21 (POOLER_PREPARED_STATEMENTS=true) fail once transactions interleave`, async (ctx) => {
    const [major, minor] = version.replace(/^PgBouncer\s*/i, '').split('.').map(Number)
    if (major! > 1 || minor! >= 21) ctx.skip() // 1.21+ with max_prepared_statements keeps them
    const named = [newManager({ poolerPreparedStatements: true }), newManager({ poolerPreparedStatements: true })]
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 60 }, (_, i) =>
          named[i % 2]!.withTenant(D, (db) =>
            db.transaction(async (tx) => {
              // drizzle's .prepare() statements (its ad-hoc ones always go unnamed).
              const repo = createProjectsRepository(tx as unknown as TenantDb)
              await repo.findById(crypto.randomUUID())
              await repo.findById(crypto.randomUUID())
            }),
          ),
        ),
      )
      const errors = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as { cause?: unknown }).cause ?? r.reason)] : []))
      expect(errors.length).toBeGreaterThan(0)
      expect(errors.some((e) => /prepared statement "[^"]+" does not exist/.test(e))).toBe(true)
    } finally {
      await Promise.all(named.map((m) => m.close()))
    }
  })

  it('shared tenants interleaving through PgBouncer never see each other’s rows', async () => {
    const seen = new Map<string, Set<string>>([
      [A.id, new Set()],
      [B.id, new Set()],
    ])
    const backends = new Map<string, Set<number>>([
      [A.id, new Set()],
      [B.id, new Set()],
    ])
    const round = (pools: PoolManager, t: TenantRecord, i: number) =>
      pools.withTenant(t, async (db) => {
        const prefix = t === A ? 'a' : 'b'
        // A single-statement unit (begin; set local …; statement; commit) …
        await db.insert(projects).values({ name: `${prefix}-${i}` })
        // … and a drizzle transaction (set_config(…, true) first), each re-reading everything the tenant can see.
        const rows = await db.transaction(async (tx) => {
          await tx.insert(projects).values({ name: `${prefix}-tx-${i}` })
          return tx.select({ name: projects.name }).from(projects)
        })
        for (const r of rows) seen.get(t.id)!.add(r.name)
        const [pid] = await db.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)
        backends.get(t.id)!.add(pid!.pid)
        return (await db.select({ name: projects.name }).from(projects)).map((r) => r.name)
      })
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => [round(services.pools, A, i), round(other, B, i), round(other, A, 100 + i), round(services.pools, B, 100 + i)]).flat(),
    )
    for (const names of answers) expect(new Set(names.map((n) => n[0])).size).toBe(1)
    expect([...seen.get(A.id)!].every((n) => n.startsWith('a-'))).toBe(true)
    expect([...seen.get(B.id)!].every((n) => n.startsWith('b-'))).toBe(true)
    // The same server backends carried both tenants' transactions (PgBouncer hands them out per transaction).
    const shared = [...backends.get(A.id)!].filter((pid) => backends.get(B.id)!.has(pid))
    expect(shared.length).toBeGreaterThan(0)
    // Ground truth: 160 rows each, every one stamped with its own tenant.
    const rows = await truth<{ tenant_id: string; n: number; wrong: number }[]>`
      select tenant_id::text, count(*)::int as n, count(*) filter (where left(name, 1) <> case when tenant_id = ${A.id}::uuid then 'a' else 'b' end)::int as wrong
      from projects where tenant_id in (${A.id}::uuid, ${B.id}::uuid) and name ~ '^[ab]-' group by tenant_id`
    expect(rows.sort((x, y) => x.tenant_id.localeCompare(y.tenant_id))).toEqual(
      [
        { tenant_id: A.id, n: 160, wrong: 0 },
        { tenant_id: B.id, n: 160, wrong: 0 },
      ].sort((x, y) => x.tenant_id.localeCompare(y.tenant_id)),
    )
    // The shared pool's connections are PgBouncer's clients on the shared database, as the data role.
    const clients = await clientsOn(A.dbName)
    expect(clients.length).toBeGreaterThan(0)
    expect(new Set(clients.map((c) => c.user))).toEqual(new Set(['tenantkit_rls']))
    // Nothing is left set on the pooled server connections: a fresh transaction through PgBouncer sees no tenant.
    const bare = connect(A.poolerUrl!, { max: 1, prepare: false })
    try {
      for (let i = 0; i < 10; i++) {
        const [row] = await bare<{ t: string | null }[]>`select nullif(current_setting('app.tenant_id', true), '') as t, (select count(*)::int from projects) as n`
        expect(row).toEqual({ t: null, n: 0 })
      }
    } finally {
      await bare.end()
    }
  })

  it('a moving tenant’s read-only pool goes past the pooler (PgBouncer refuses default_transaction_read_only)', async () => {
    const moving = { ...D, moving: true }
    const [row] = await other.withTenant(moving, (db) =>
      db.execute<{ ro: string; app: string }>(sql`select current_setting('default_transaction_read_only') as ro, current_setting('application_name') as app`),
    )
    expect(row).toEqual({ ro: 'on', app: READ_ONLY_APPLICATION })
    await expect(other.withTenant(moving, (db) => db.insert(projects).values({ name: 'during-move' }))).rejects.toMatchObject({ cause: { code: '25006' } })
    expect((await clientsOn(D.dbName)).map((c) => c.application_name)).not.toContain(READ_ONLY_APPLICATION)
    // Shared tenants on the move too: their read-only pool is the shared database's direct one.
    const [shared] = await other.withTenant({ ...A, moving: true }, (db) =>
      db.execute<{ ro: string }>(sql`select current_setting('default_transaction_read_only') as ro`),
    )
    expect(shared).toEqual({ ro: 'on' })
  })

  it('tenant jobs reach a database tenant and a shared tenant through PgBouncer', async () => {
    const registry = {
      'test.pgbouncer': tenantJob({
        payload: { marker: Type.String() },
        maxRetries: 0,
        async process(ctx, p) {
          await ctx.db.insert(projects).values({ name: `job-${p.marker}` })
          const names = (await ctx.db.select({ name: projects.name }).from(projects)).map((r) => r.name)
          return { jobNames: names.filter((n) => n.startsWith('job-')) }
        },
      }),
    }
    const tasks = createTaskManager({ registry, deps: {}, ...services, config: env.config, logger: pino({ level: 'silent' }) })
    const workers = tasks.startWorkers({ scopes: ['tenant'], concurrency: 4 })
    try {
      await workers.ready()
      const jobs = await Promise.all([D, A, B].map(async (t) => ({ t, job: await tasks.submit('test.pgbouncer', { tenantId: t.id, marker: t.slug }) })))
      for (const { t, job } of jobs) {
        const view = await settled(tasks, job.id, { tenantId: t.id })
        expect(view.status, view.errorLog ?? '').toBe('completed')
        expect(view.result).toEqual({ jobNames: [`job-${t.slug}`] })
      }
    } finally {
      await workers.close()
      await tasks.close()
    }
  })
})

describe.skipIf(unavailable)('a server’s pooler (servers pooler / PUT /admin/api/servers/:name/pooler)', () => {
  let world: SharedWorld
  let second: Services
  let console_: Sql

  beforeAll(async () => {
    world = await sharedWorld({ 'srv-d': 'database', 'srv-s': 'shared' })
    // Another process of the deployment: its own catalog cache and pools, the same Redis bus.
    second = createServices(world.env.config, pino({ level: 'silent' }))
    console_ = pgbouncerConsole()
  })
  afterAll(async () => {
    await setServerPooler(serverAdminDeps(world.services), 'default', null).catch(() => {})
    await second?.close()
    await console_?.end()
    await world?.close()
  })
  const clientsOf = async (database: string) =>
    (await console_.unsafe<{ database: string }[]>('show clients')).filter((r) => r.database === database).length
  const read = (services: Services, slug: string) =>
    services.catalog.get(slug).then((t) => services.pools.withTenant(t!, (db) => db.select({ id: projects.id }).from(projects)))

  it('routes the server’s database tenants through it in every process at once, and back directly with none', async () => {
    // Both processes have the tenants cached and a pool open directly.
    for (const s of [world.services, second]) await Promise.all([read(s, 'srv-d'), read(s, 'srv-s')])
    const d = world.tenants['srv-d']!
    expect(await clientsOf(d.dbName)).toBe(0)

    const set = await setServerPooler(serverAdminDeps(world.services), 'default', `postgres://127.0.0.1:${PGBOUNCER_PORT}`)
    expect(set).toEqual({ name: 'default', pooler: `127.0.0.1:${PGBOUNCER_PORT}` })
    const overview = await describeServers(serverAdminDeps(world.services))
    expect(overview.find((s) => s.name === 'default')?.pooler).toBe(`127.0.0.1:${PGBOUNCER_PORT}`)
    // The other process heard it: its cached record now names the pooler, with the tenant's own role and database.
    await waitFor(async () => ((await second.catalog.get('srv-d'))?.poolerUrl === viaPgBouncer(d.dbUrl) ? true : undefined), {
      message: 'the second process rerouted',
    })
    expect((await world.services.catalog.get('srv-d'))?.poolerUrl).toBe(viaPgBouncer(d.dbUrl))
    // A shared tenant keeps its direct pool.
    expect((await second.catalog.get('srv-s'))?.poolerUrl).toBeUndefined()
    await Promise.all([read(world.services, 'srv-d'), read(second, 'srv-d'), read(second, 'srv-s')])
    expect(await clientsOf(d.dbName)).toBeGreaterThanOrEqual(2)

    await setServerPooler(serverAdminDeps(world.services), 'default', null)
    await waitFor(async () => ((await second.catalog.get('srv-d'))?.poolerUrl === undefined ? true : undefined), { message: 'back directly' })
    // Their pools through PgBouncer were closed: reads reopen direct ones.
    await Promise.all([read(world.services, 'srv-d'), read(second, 'srv-d')])
    await waitFor(async () => ((await clientsOf(d.dbName)) === 0 ? true : undefined), { message: 'no client left on PgBouncer' })
  })

  it('refuses a pooler URL with credentials or a database, or where nothing listens (400 INVALID_SERVER), and an unknown server (404)', async () => {
    const deps = serverAdminDeps(world.services)
    for (const url of ['postgres://app:secret@127.0.0.1:6432', 'postgres://127.0.0.1:6432/tenant_db', 'http://127.0.0.1:6432', 'not a url']) {
      await expect(setServerPooler(deps, 'default', url), url).rejects.toMatchObject({ statusCode: 400, code: 'INVALID_SERVER' })
    }
    // A port nothing listens on.
    await expect(setServerPooler(deps, 'default', 'postgres://127.0.0.1:1')).rejects.toMatchObject({ statusCode: 400, code: 'INVALID_SERVER' })
    await expect(setServerPooler(deps, 'nope', null)).rejects.toMatchObject({ statusCode: 404, code: 'SERVER_NOT_FOUND' })
    expect((await world.services.provisioner.servers.get('default')).poolerUrl).toBeNull()
  })
})
