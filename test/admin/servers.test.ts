/**
 * The database servers' lifecycle, through /admin/api/servers and `tenants servers remove`, on two real
 * Postgres clusters (the second on 127.0.0.1:55433, .ci/second-postgres): the list (no URL or credential
 * in it), authorization (401/403), 404/409 bodies, removal refused while the server is active, holds
 * tenants or holds rows in its shared database; drained through the route (tenants.move jobs run by a
 * worker), then removed by the CLI (another process): its shared database dropped, the catalog row gone,
 * and this process' pools there closed through the invalidation bus. Writes audited. A soft-deleted tenant
 * still holds its server; a shared database tenantkit did not create is never dropped.
 */
import { randomUUID } from 'node:crypto'
import { and, eq, sql } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dbServers, tenantMoves, tenants } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { SHARED } from '../helpers/env.js'
import { dropOnSecondServer, ensureSecondServer, ensureSecondSharedRole, SECOND_ADMIN_URL, SECOND_APP_URL, secondSharedUrl } from '../helpers/second-server.js'
import { type Member, newMember, type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { auditRows, platformAdmin, ua } from './helpers.js'

const unavailable = await ensureSecondServer()
if (unavailable) console.warn(`admin/servers.test.ts skipped: ${unavailable}`)

const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'shared' })
const services = () => ctx.app.services
const logger = pino({ level: 'silent' })
let worker: WorkerRuntime | undefined
let ops: Member
let plain: Member
let onSecond: TenantFixture
let dbTenant: { id: string; slug: string }

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stderr += `${l}\n`) }
  const code = await runCli(args, { config: ctx.env.config, logger, io })
  return { code, stdout, stderr }
}
const sharedDb = () => `${ctx.env.name}_shared`
/** On the second cluster as its superuser: `db` (default its maintenance database). */
async function onSecondCluster<T>(fn: (sql: ReturnType<typeof connect>) => Promise<T>, db = 'postgres'): Promise<T> {
  const sql = connect(withDatabase(SECOND_ADMIN_URL, db), { max: 1 })
  try {
    return await fn(sql)
  } finally {
    await sql.end()
  }
}
const databaseExists = (name: string) => onSecondCluster(async (sql) => (await sql`select 1 from pg_database where datname = ${name}`).length === 1)
const serverRow = async (name: string) => (await services().host.db.select().from(dbServers).where(eq(dbServers.name, name)))[0]
const remove = (m: Member, name: string) => m.c.delete(`/admin/api/servers/${name}`, ua)
/** This deployment's tenant templates on the second cluster. */
const templatesOnSecond = () =>
  onSecondCluster(async (sql) => (await sql<{ datname: string }[]>`select datname from pg_database where datname like ${`${ctx.env.name}_tpl_%`}`).map((r) => r.datname))
const noTemplates = { dropped: [], kept: [] }

beforeAll(async () => {
  if (unavailable) return
  await ensureSecondSharedRole()
  worker = await startWorkers(ctx.app.services, { scopes: ['system', 'tenant'], concurrency: 2 })
  ops = await platformAdmin(ctx.app)
  plain = await newMember(ctx.app, 'plain', { signIn: true })
  const added = await cli(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--role', 'shared', '--shared-url', secondSharedUrl(ctx.env.name)])
  expect(added, added.stderr).toMatchObject({ code: 0 })
  await services().provisioner.servers.refresh()
  onSecond = await tenantWith(ctx.app, { project: 'kept on second', server: 'second' })
  dbTenant = await services().provisioner.provision({ slug: 'srv-db', name: 'Database tenant', isolation: 'database', server: 'second' })
}, 60_000)
afterAll(async () => {
  await worker?.close(5000)
  if (ctx.env) await dropOnSecondServer(ctx.env.name)
})

describe.skipIf(unavailable)('/admin/api/servers and tenants servers remove', () => {
  it('anonymous 401, a non-admin 403 PLATFORM_ADMIN_REQUIRED on every route; nothing changes', async () => {
    for (const [method, url] of [
      ['GET', '/admin/api/servers'],
      ['POST', '/admin/api/servers/second/drain'],
      ['POST', '/admin/api/servers/second/activate'],
      ['PUT', '/admin/api/servers/second/pooler'],
      ['DELETE', '/admin/api/servers/second'],
    ] as const) {
      const anon = await ctx.app.inject({ method, url })
      expect(anon.statusCode, `${method} ${url}`).toBe(401)
      expect(anon.json()).toMatchObject({ statusCode: 401, code: 'UNAUTHENTICATED' })
      const denied = await plain.c.request({ method, url, headers: ua })
      expect(denied.statusCode, `${method} ${url}`).toBe(403)
      expect(denied.json()).toMatchObject({ statusCode: 403, error: 'Forbidden', code: 'PLATFORM_ADMIN_REQUIRED' })
    }
    expect(await serverRow('second')).toMatchObject({ status: 'active' })
  })

  it('lists every server with what it holds, this process\' pools there and whether it answers; no URL or credential', async () => {
    // A read through the API: this process now holds a pool on the second server's shared database.
    expect((await onSecond.as(onSecond.viewer).get('/projects?limit=5')).statusCode).toBe(200)
    const res = await ops.c.get('/admin/api/servers', ua)
    expect(res.statusCode, res.body).toBe(200)
    const { items } = res.json()
    expect(items.map((s: { name: string }) => s.name)).toEqual(['default', 'second'])
    expect(items[1]).toMatchObject({
      name: 'second',
      role: 'shared',
      status: 'active',
      capacity: null,
      host: '127.0.0.1:55433',
      sharedDatabase: sharedDb(),
      tenants: { databases: 1, shared: 1, deleted: 0, moving: 0 },
      reachable: true,
    })
    expect(items[1].pool.openPools).toBeGreaterThanOrEqual(1)
    expect(items[1].pool.budget).toBe(ctx.env.config.pool.connectionBudget)
    expect(items[0]).toMatchObject({ name: 'default', host: '127.0.0.1:5432', reachable: true })
    for (const secret of ['postgres://', 'postgresql://', 'tenantkit_app:', 'tenantkit_rls:', '@127.0.0.1']) expect(res.body).not.toContain(secret)

    const unprobed = await ops.c.get('/admin/api/servers?probe=false', ua)
    expect(unprobed.json().items.every((s: { reachable: unknown }) => s.reachable === null)).toBe(true)
    const bad = await ops.c.get('/admin/api/servers?probe=maybe', ua)
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
  })

  it('puts a pooler in front of a server (route and CLI, audited): its database tenants connect there as themselves; 400 and 404 otherwise', async () => {
    // The second cluster's own port stands in for a pooler in front of it (test/tenancy/pgbouncer.test.ts uses a real PgBouncer).
    const port = new URL(SECOND_ADMIN_URL).port
    const set = await ops.c.put('/admin/api/servers/second/pooler', { url: `postgres://localhost:${port}` }, ua)
    expect(set.statusCode, set.body).toBe(200)
    expect(set.json()).toEqual({ name: 'second', pooler: `localhost:${port}` })
    const listed = (await ops.c.get('/admin/api/servers?probe=false', ua)).json().items
    expect(listed.find((s: { name: string }) => s.name === 'second').pooler).toBe(`localhost:${port}`)
    expect(listed.find((s: { name: string }) => s.name === 'default').pooler).toBeNull()
    const record = (await services().catalog.get(dbTenant.id))!
    const via = new URL(record.poolerUrl!)
    expect({ host: via.host, database: via.pathname.slice(1), role: via.username }).toEqual({
      host: `localhost:${port}`,
      database: record.dbName,
      role: new URL(record.dbUrl).username,
    })
    expect(await services().pools.withTenant(record, (db) => db.execute(sql`select current_database() as db`))).toMatchObject([{ db: record.dbName }])
    expect(await auditRows(ctx.app, 'admin.server_pooler_set', 'second')).toEqual([
      expect.objectContaining({ actorUserId: ops.id, targetType: 'db_server', metadata: { pooler: `localhost:${port}` } }),
    ])

    for (const [url, why] of [
      [`postgres://app:secret@localhost:${port}`, /host and port only/],
      [`postgres://localhost:${port}/somedb`, /host and port only/],
      ['https://localhost', /postgres:\/\/ URL/],
      ['postgres://127.0.0.1:1', /did not accept a connection/],
    ] as const) {
      const res = await ops.c.put('/admin/api/servers/second/pooler', { url }, ua)
      expect(res.statusCode, url).toBe(400)
      expect(res.json(), url).toMatchObject({ statusCode: 400, code: 'INVALID_SERVER', message: expect.stringMatching(why) })
    }
    expect((await ops.c.put('/admin/api/servers/second/pooler', {}, ua)).json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
    expect((await ops.c.put('/admin/api/servers/nowhere/pooler', { url: null }, ua)).json()).toMatchObject({ statusCode: 404, code: 'SERVER_NOT_FOUND' })

    const cleared = await cli(['tenants', 'servers', 'pooler', 'second', 'none'])
    expect(cleared, cleared.stderr).toMatchObject({ code: 0, stdout: 'second: database tenants connect directly\n' })
    expect((await services().catalog.get(dbTenant.id))!.poolerUrl).toBeUndefined()
  })

  it('refuses to remove an unknown (404), the default (409), an active (409) or a non-empty draining server (409, what it holds)', async () => {
    const unknown = await remove(ops, 'nowhere')
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json()).toEqual({ statusCode: 404, error: 'Not Found', code: 'SERVER_NOT_FOUND', message: 'no database server "nowhere"' })
    for (const path of ['/admin/api/servers/nowhere/drain', '/admin/api/servers/nowhere/activate']) {
      const res = await ops.c.post(path, undefined, ua)
      expect(res.statusCode, path).toBe(404)
      expect(res.json()).toMatchObject({ code: 'SERVER_NOT_FOUND' })
    }
    expect((await remove(ops, 'Not_A_Name')).json()).toMatchObject({ statusCode: 400, code: 'VALIDATION_ERROR' })
    const primary = await remove(ops, 'default')
    expect(primary.statusCode).toBe(409)
    expect(primary.json()).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'SERVER_NOT_REMOVABLE' })
    const active = await remove(ops, 'second')
    expect(active.statusCode).toBe(409)
    expect(active.json()).toMatchObject({ code: 'SERVER_NOT_DRAINING', message: expect.stringMatching(/is active: drain it first/) })
    const viaCli = await cli(['tenants', 'servers', 'remove', 'second'])
    expect(viaCli).toMatchObject({ code: 1, stdout: '' })
    expect(viaCli.stderr).toMatch(/SERVER_NOT_DRAINING/)
    expect((await cli(['tenants', 'servers', 'remove', 'default'])).stderr).toMatch(/cannot be removed \(SERVER_NOT_REMOVABLE\)/)
    expect((await cli(['tenants', 'servers', 'remove'])).code).toBe(2)

    // Draining, but its tenants have not moved: refused, saying what it holds.
    await services().provisioner.servers.setStatus('second', 'draining')
    const full = await remove(ops, 'second')
    expect(full.statusCode).toBe(409)
    expect(full.json()).toMatchObject({
      statusCode: 409,
      code: 'SERVER_NOT_EMPTY',
      message: expect.stringMatching(/still holds 1 tenant database\(s\), 1 shared tenant\(s\)/),
      holds: { databases: 1, shared: 1, deleted: 0, moving: 0, sharedRows: 0 },
    })
    const cliFull = await cli(['tenants', 'servers', 'remove', 'second'])
    expect(cliFull.code).toBe(1)
    expect(cliFull.stderr).toMatch(/still holds 1 tenant database\(s\), 1 shared tenant\(s\).*\(SERVER_NOT_EMPTY\)/)
    expect(await serverRow('second')).toBeDefined()
    expect(await databaseExists(sharedDb())).toBe(true)

    const activated = await ops.c.post('/admin/api/servers/second/activate', undefined, ua)
    expect(activated.statusCode, activated.body).toBe(200)
    expect(activated.json()).toEqual({ name: 'second', status: 'active' })
    expect(await serverRow('second')).toMatchObject({ status: 'active' })
    expect(await auditRows(ctx.app, 'admin.server_activated', 'second')).toEqual([
      expect.objectContaining({ actorUserId: ops.id, targetType: 'db_server', userAgent: expect.any(String) }),
    ])
  })

  it('drains through the route: one tenants.move job per tenant, run by the worker; data intact', async () => {
    const res = await ops.c.post('/admin/api/servers/second/drain', undefined, ua)
    expect(res.statusCode, res.body).toBe(202)
    const body = res.json()
    expect(body).toMatchObject({ name: 'second', status: 'draining', skipped: [] })
    expect(body.moves.map((m: { slug: string }) => m.slug).sort()).toEqual([onSecond.slug, dbTenant.slug].sort())
    for (const m of body.moves) expect(m).toMatchObject({ to: 'default', moveId: expect.any(String), jobId: m.moveId })
    expect(await auditRows(ctx.app, 'admin.server_drained', 'second')).toEqual([
      expect.objectContaining({ actorUserId: ops.id, metadata: { moves: 2, skipped: 0 } }),
    ])
    await waitFor(
      async () =>
        (await services().host.db.select().from(tenants).where(eq(tenants.server, 'second'))).length === 0 &&
        (await services().host.db.select().from(tenantMoves).where(eq(tenantMoves.state, 'running'))).length === 0,
      { timeout: 60_000, message: 'both tenants moved off the second server' },
    )
    const mine = await onSecond.as(onSecond.viewer).get('/projects?limit=100')
    expect(JSON.stringify(mine.json())).toContain('kept on second')
    const listed = (await ops.c.get('/admin/api/servers?probe=false', ua)).json().items[1]
    expect(listed).toMatchObject({ status: 'draining', tenants: { databases: 0, shared: 0, deleted: 0, moving: 0 } })
  }, 90_000)

  it('refuses while its shared database still holds rows, whoever they belong to', async () => {
    const orphan = randomUUID()
    await onSecondCluster((sql) => sql`insert into projects (id, name, tenant_id) values (gen_random_uuid(), 'orphan', ${orphan})`, sharedDb())
    try {
      const res = await remove(ops, 'second')
      expect(res.statusCode).toBe(409)
      expect(res.json()).toMatchObject({ code: 'SERVER_NOT_EMPTY', holds: { sharedRows: 1 }, message: expect.stringMatching(/1 row\(s\) in its shared database/) })
    } finally {
      await onSecondCluster((sql) => sql`delete from projects where tenant_id = ${orphan}`, sharedDb())
    }
    // The check ran in a transaction rolled back: row-level security is still forced there.
    const forced = await onSecondCluster(async (sql) => (await sql<{ f: boolean }[]>`select relforcerowsecurity as f from pg_class where relname = 'projects'`)[0]!.f, sharedDb())
    expect(forced).toBe(true)
  })

  it('removes the drained server from the CLI: shared database dropped, catalog row gone, this process\' pools there closed', async () => {
    // This process holds pools on the second server: a tenant pool on its shared database, and its maintenance pool.
    const target = { id: randomUUID(), dbUrl: secondSharedUrl(ctx.env.name), poolerUrl: undefined, maxConnections: undefined, isolation: 'shared' as const, server: 'second' }
    await services().pools.withTenant(target, (db) => db.$client`select 1`)
    expect(services().pools.stats().servers.second?.openPools).toBeGreaterThanOrEqual(1)

    // Provisioning there made this deployment's tenant template on the second cluster.
    const templates = await templatesOnSecond()
    expect(templates).toHaveLength(1)

    const res = await cli(['tenants', 'servers', 'remove', 'second'])
    expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' })
    expect(res.stdout).toBe(`second: removed\nshared database ${sharedDb()} dropped\ntemplate(s) dropped: ${templates[0]}\n`)
    expect(await serverRow('second')).toBeUndefined()
    expect(await databaseExists(sharedDb())).toBe(false)
    expect(await templatesOnSecond()).toEqual([])
    // Announced on the invalidation bus by the CLI's process: this one closed its pools there.
    await waitFor(() => services().pools.stats().servers.second === undefined, { message: "this process' pools on the removed server closed" })
    await expect(services().provisioner.servers.get('second')).rejects.toMatchObject({ code: 'SERVER_NOT_FOUND' })
    expect((await ops.c.get('/admin/api/servers?probe=false', ua)).json().items.map((s: { name: string }) => s.name)).toEqual(['default'])
    expect((await remove(ops, 'second')).statusCode).toBe(404)
    // The default server's shared database (same name, other cluster) is untouched.
    const sql = connect(ctx.env.config.sharedDatabaseUrl!, { max: 1 })
    try {
      expect(await sql`select 1`).toHaveLength(1)
    } finally {
      await sql.end()
    }
  })

  it('removes an empty draining server through the route, audited; its shared database null', async () => {
    await services().provisioner.servers.add({ name: 'third', adminUrl: SECOND_APP_URL, role: 'dedicated' })
    expect((await remove(ops, 'third')).json()).toMatchObject({ code: 'SERVER_NOT_DRAINING' })
    await services().provisioner.servers.setStatus('third', 'draining')
    const res = await remove(ops, 'third')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({ name: 'third', removed: true, sharedDatabase: null, templates: noTemplates })
    expect(await serverRow('third')).toBeUndefined()
    expect(await auditRows(ctx.app, 'admin.server_removed', 'third')).toEqual([
      expect.objectContaining({ actorUserId: ops.id, targetType: 'db_server', metadata: { sharedDatabase: null, templates: noTemplates } }),
    ])
    expect(await services().host.db.select().from(tenantMoves).where(and(eq(tenantMoves.toServer, 'third')))).toEqual([])
  })

  it('counts a soft-deleted tenant as held (its database is still there): refused until it is hard-deleted', async () => {
    await services().provisioner.servers.add({ name: 'fourth', adminUrl: SECOND_APP_URL, role: 'dedicated' })
    const t = await services().provisioner.provision({ slug: 'srv-deleted', name: 'Deleted', isolation: 'database', server: 'fourth' })
    await services().provisioner.run('softDeleted', t.id)
    // A drain moves live tenants only: the soft-deleted one stays, and so does its database; the drain says so (exit 1).
    const drained = await cli(['tenants', 'servers', 'drain', 'fourth'])
    expect(drained.code).toBe(1)
    expect(drained.stdout).toMatch(/\nsrv-deleted: not moved: soft-deleted: its data stays here until it is restored \(then moved\) or deleted with --hard\n0 tenant\(s\) queued to move, 1 left\n/)
    const res = await remove(ops, 'fourth')
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({
      code: 'SERVER_NOT_EMPTY',
      holds: { databases: 1, shared: 0, deleted: 1 },
      message: expect.stringMatching(/1 tenant database\(s\), \(1 of them soft-deleted: restore and move them, or delete them with --hard\)/),
    })
    expect(await databaseExists(t.dbName)).toBe(true)
    await services().provisioner.run('hardDeleted', t.id)
    expect(await databaseExists(t.dbName)).toBe(false)
    // Its provisioning made the template again on the second cluster, and nothing else is there now: dropped.
    const [template] = await templatesOnSecond()
    expect(template).toBeDefined()
    expect((await remove(ops, 'fourth')).json()).toEqual({ name: 'fourth', removed: true, sharedDatabase: null, templates: { dropped: [template], kept: [] } })
    expect(await templatesOnSecond()).toEqual([])
  })

  it('keeps the templates while another server row reaches the same Postgres under another host string', async () => {
    const viaLocalhost = SECOND_APP_URL.replace('127.0.0.1', 'localhost')
    expect(viaLocalhost).not.toBe(SECOND_APP_URL)
    await services().provisioner.servers.add({ name: 'fifth', adminUrl: SECOND_APP_URL, role: 'dedicated' })
    await services().provisioner.servers.add({ name: 'alias', adminUrl: viaLocalhost, role: 'dedicated' })
    const t = await services().provisioner.provision({ slug: 'srv-fifth', name: 'Fifth', isolation: 'database', server: 'fifth' })
    await services().provisioner.run('hardDeleted', t.id)
    const templates = await templatesOnSecond()
    expect(templates).toHaveLength(1)
    await services().provisioner.servers.setStatus('fifth', 'draining')
    const res = await remove(ops, 'fifth')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().templates).toEqual({ dropped: [], kept: templates, reason: 'another server or the host database is on the same Postgres' })
    expect(await templatesOnSecond()).toEqual(templates)
    // The alias is the last one there: its removal drops them.
    await services().provisioner.servers.setStatus('alias', 'draining')
    expect((await remove(ops, 'alias')).json().templates).toEqual({ dropped: templates, kept: [] })
    expect(await templatesOnSecond()).toEqual([])
  })

  it('keeps a shared database tenantkit did not create (it was given one): the server goes, the database stays', async () => {
    const given = `${ctx.env.name}_given`
    await onSecondCluster((sql) => sql.unsafe(`create database "${given}" owner tenantkit_app`))
    const sharedUrl = secondSharedUrl(ctx.env.name).replace(/[^/]+$/, given)
    await services().provisioner.servers.add({ name: 'given', adminUrl: SECOND_APP_URL, role: 'shared', sharedUrl })
    // Migrated and sharedified where it is, not created.
    await (await services().provisioner.servers.shared('given'))!.ensure()
    await services().provisioner.servers.setStatus('given', 'draining')
    const res = await remove(ops, 'given')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({ name: 'given', removed: true, sharedDatabase: { name: given, dropped: false, reason: 'tenantkit did not create it' }, templates: noTemplates })
    expect(await databaseExists(given)).toBe(true)
    expect(await serverRow('given')).toBeUndefined()
  })
})
