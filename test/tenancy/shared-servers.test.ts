/**
 * Shared databases on several servers: the second cluster (127.0.0.1:55433) added as a `shared` server with
 * a shared URL gets its own shared database (migrated, sharedified, owned by the server's admin role, reached
 * as a data role that is neither owner nor BYPASSRLS); shared tenants are placed across the two by load,
 * served there through the API with row-level security holding, moved from one server's shared database to
 * the other's and back under reads (0 failed), and moved off by a drain. Fleet migrations reach both.
 */
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { migrateFleet } from '../../src/core/tenancy/fleet.js'
import { moveFigures, type TenantMover } from '../../src/core/tenancy/move/index.js'
import { createPlacement, defaultPlacement } from '../../src/core/tenancy/servers.js'
import { SHARED, SHARED_ROLE } from '../helpers/env.js'
import {
  dropOnSecondServer,
  ensureSecondServer,
  ensureSecondSharedRole,
  SECOND_ADMIN_URL,
  SECOND_APP_URL,
  secondSharedUrl,
} from '../helpers/second-server.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { continuousReads, type ReadTally } from '../helpers/continuous-reads.js'

const unavailable = await ensureSecondServer()
if (unavailable) console.warn(`shared-servers.test.ts skipped: ${unavailable}`)

const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'shared' })
const services = () => ctx.app.services
const logger = pino({ level: 'silent' })

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stderr += `${l}\n`) }
  const code = await runCli(args, { config: ctx.env.config, logger, io })
  return { code, stdout, stderr }
}
/** A query on the second server's shared database as the superuser (past row-level security). */
async function asSuperuser<T>(fn: (sql: ReturnType<typeof connect>) => Promise<T>): Promise<T> {
  const sql = connect(withDatabase(SECOND_ADMIN_URL, `${ctx.env.name}_shared`), { max: 1 })
  try {
    return await fn(sql)
  } finally {
    await sql.end()
  }
}
const portOf = async (id: string) =>
  services().pools.withTenant((await services().catalog.get(id))!, async (db) => (await db.$client`select current_setting('port') as port`)[0]!.port)
const serverOf = async (id: string) => (await services().host.db.select().from(tenants).where(eq(tenants.id, id)))[0]!.server

beforeAll(async () => {
  if (!unavailable) await ensureSecondSharedRole()
})
afterAll(async () => {
  if (ctx.env) await dropOnSecondServer(ctx.env.name)
})

describe('placement of shared tenants', () => {
  const load = (name: string, sharedTenants: number, hostsShared = true, status: 'active' | 'draining' = 'active') => ({
    name,
    role: 'shared' as const,
    status,
    capacity: 1,
    tenants: 1,
    hostsShared,
    sharedTenants,
  })
  const req = { tenantId: 'x', slug: 'x', planTier: 'free', isolation: 'shared' as const }
  it('the server with the fewest shared tenants among those holding a shared database; the default on a tie; capacity does not apply', () => {
    expect(defaultPlacement(req, [load('default', 3), load('b', 2)])).toBe('b')
    expect(defaultPlacement(req, [load('b', 2), load('default', 2)])).toBe('default')
    expect(defaultPlacement(req, [load('default', 9), load('b', 0, false)])).toBe('default')
    expect(defaultPlacement(req, [load('default', 9, true, 'draining'), load('b', 5)])).toBe('b')
    expect(defaultPlacement(req, [load('b', 0, false)])).toBeUndefined()
  })

  it('by size (PLACEMENT_BY=size): the smallest databases first, capacity and dedicated-first still apply; an unread size comes last', () => {
    const bySize = createPlacement({ by: 'size' })
    expect(bySize.sizes).toBe(true)
    expect(defaultPlacement.sizes).toBe(false)
    const db = { ...req, isolation: 'database' as const }
    const server = (name: string, role: 'shared' | 'dedicated', tenants: number, bytes: number | undefined, capacity: number | null = null) => ({
      ...load(name, 0),
      role,
      tenants,
      capacity,
      bytes,
    })
    // More tenants but fewer bytes wins by size, loses by count.
    const pair = [server('a', 'dedicated', 10, 100e6), server('b', 'dedicated', 2, 900e6)]
    expect(bySize(db, pair)).toBe('a')
    expect(defaultPlacement(db, pair)).toBe('b')
    expect(bySize(db, [server('a', 'dedicated', 10, 100e6, 10), server('b', 'dedicated', 2, 900e6)])).toBe('b')
    expect(bySize(db, [server('default', 'shared', 0, 1e6), server('b', 'dedicated', 2, 900e6)])).toBe('b')
    expect(bySize(db, [server('a', 'dedicated', 0, undefined), server('b', 'dedicated', 9, 900e6)])).toBe('b')
    // Shared tenants: the smaller shared database.
    expect(bySize(req, [{ ...load('default', 1), sharedBytes: 50e6 }, { ...load('b', 9), sharedBytes: 10e6 }])).toBe('b')
    expect(defaultPlacement(req, [{ ...load('default', 1), sharedBytes: 50e6 }, { ...load('b', 9), sharedBytes: 10e6 }])).toBe('default')
  })
})

describe.skipIf(unavailable)('shared databases on several servers', () => {
  let first: TenantFixture
  let onSecond: TenantFixture
  let neighbour: TenantFixture

  it('adds the second cluster as a shared server: its shared database is created, migrated and bound by row-level security', async () => {
    // Made before: on the default server's shared database, the only one then.
    first = await tenantWith(ctx.app, { project: 'first' })
    expect(await serverOf(first.id)).toBe('default')

    const url = secondSharedUrl(ctx.env.name)
    const owner = await cli(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--role', 'shared', '--shared-url', SECOND_APP_URL.replace('/postgres', `/${ctx.env.name}_shared`)])
    expect(owner).toMatchObject({ code: 1 })
    expect(owner.stderr).toMatch(/must not be the admin URL's.*INVALID_SERVER/)
    const superuser = await cli(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--role', 'shared', '--shared-url', withDatabase(SECOND_ADMIN_URL, 'x')])
    expect(superuser.stderr).toMatch(/superuser or has BYPASSRLS/)
    const dedicated = await cli(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--shared-url', url])
    expect(dedicated.stderr).toMatch(/only a server of role shared holds a shared database/)

    const added = await cli(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--role', 'shared', '--shared-url', url])
    expect(added, added.stderr).toMatchObject({ code: 0, stderr: '' })
    expect(added.stdout).toBe(
      `added server second (shared) at 127.0.0.1:55433\nshared database ${ctx.env.name}_shared ready on second (data role ${SHARED_ROLE})\n`,
    )
    const listed = await cli(['tenants', 'servers', 'list'])
    expect(listed.stdout).toMatch(/\nsecond\s+shared\s+active\s+0\s+0\s+/)
    // Added by another process (the CLI's): placement here sees it within seconds, at once after a refresh.
    await services().provisioner.servers.refresh()

    // Sizes as PLACEMENT_BY=size reads them: every database of each server, and each shared database.
    const sized = await services().provisioner.servers.load(undefined, { sizes: true })
    const [def, second] = [sized.find((s) => s.name === 'default')!, sized.find((s) => s.name === 'second')!]
    expect(def.bytes).toBeGreaterThan(second.bytes!)
    expect(second.bytes).toBeGreaterThan(second.sharedBytes!)
    expect(second.sharedBytes).toBeGreaterThan(1_000_000)
    expect(def.sharedBytes).toBeGreaterThan(1_000_000)
    expect((await services().provisioner.servers.load()).every((s) => s.bytes === undefined)).toBe(true)
    // The second cluster holds far less than the default one (every test world's databases): size picks it.
    expect(createPlacement({ by: 'size' })({ tenantId: 'x', slug: 'x', planTier: 'free', isolation: 'database' }, sized)).toBe('second')

    // Every tenant table forces row-level security, owned by the admin role, not by the data role.
    const tables = await asSuperuser(
      (sql) => sql<{ relname: string; owner: string; forced: boolean }[]>`
        select c.relname, pg_get_userbyid(c.relowner) as owner, c.relforcerowsecurity as forced from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'`,
    )
    expect(tables.length).toBeGreaterThan(5)
    for (const t of tables) expect(t, t.relname).toMatchObject({ owner: 'tenantkit_app', forced: true })
  })

  it('places new shared tenants by load and serves them from the second server through the API, row-level security holding', async () => {
    // default holds one shared tenant, second none: the next goes to second, the one after to default (tie).
    onSecond = await tenantWith(ctx.app, { project: 'on second' })
    const tie = await services().provisioner.provision({ slug: 'tie-breaker', name: 'Tie' })
    expect(await serverOf(onSecond.id)).toBe('second')
    expect(tie.server).toBe('default')
    neighbour = await tenantWith(ctx.app, { project: 'neighbour', server: 'second' })
    expect(await serverOf(neighbour.id)).toBe('second')
    expect(await portOf(onSecond.id)).toBe('55433')
    expect(services().provisioner.writes.dbUrl((await services().host.db.select().from(tenants).where(eq(tenants.id, onSecond.id)))[0]!)).toBe(
      secondSharedUrl(ctx.env.name),
    )

    // Reads and writes through the API.
    const created = await onSecond.as(onSecond.editor).post('/projects', { name: 'written on second' })
    expect(created.statusCode, created.body).toBe(201)
    const mine = await onSecond.as(onSecond.viewer).get('/projects?limit=100')
    expect(mine.statusCode).toBe(200)
    expect(JSON.stringify(mine.json())).toContain('written on second')
    // The neighbour in the same database sees its own project only, and the other's id is a 404 to it.
    const theirs = await neighbour.as(neighbour.viewer).get('/projects?limit=100')
    expect(JSON.stringify(theirs.json())).toContain('neighbour')
    expect(JSON.stringify(theirs.json())).not.toContain('on second')
    expect((await neighbour.as(neighbour.owner).get(`/projects/${onSecond.projectId}`)).statusCode).toBe(404)
    expect((await onSecond.as(onSecond.owner).get(`/projects/${neighbour.projectId}`)).statusCode).toBe(404)
    // Both tenants' rows are in the one database; the data role sees none without a tenant, one tenant's with it.
    expect(await asSuperuser(async (sql) => (await sql`select 1 from projects`).length)).toBe(3)
    const data = connect(secondSharedUrl(ctx.env.name), { max: 1 })
    try {
      expect(await data`select * from projects`).toHaveLength(0)
      const scoped = await data.begin(async (tx) => {
        await tx`select set_config('app.tenant_id', ${neighbour.id}, true)`
        return tx<{ name: string }[]>`select name from projects`
      })
      expect(scoped.map((r) => r.name)).toEqual(['neighbour'])
      await expect(data`alter table projects no force row level security`).rejects.toThrow(/must be owner/)
    } finally {
      await data.end()
    }
    await services().provisioner.run('hardDeleted', 'tie-breaker')
    // A shared tenant's erasure on the second server deletes its rows there (through its own handle), verified.
    const gone = await services().provisioner.provision({ slug: 'gone-second', name: 'Gone', server: 'second' })
    expect(gone.server).toBe('second')
    await services().pools.withTenant((await services().catalog.get(gone.id))!, (db) => db.$client`insert into projects (id, name) values (gen_random_uuid(), 'doomed')`)
    const rowsOf = (id: string) => asSuperuser(async (sql) => (await sql`select 1 from projects where tenant_id = ${id}`).length)
    expect(await rowsOf(gone.id)).toBe(1)
    await services().provisioner.run('hardDeleted', gone.id)
    expect(await rowsOf(gone.id)).toBe(0)
    expect(await services().provisioner.writes.find(gone.id)).toBeUndefined()
    expect(await rowsOf(neighbour.id)).toBe(1)
  })

  it('moves a shared tenant from the default server to the second and back under reads: 0 failed reads, rows verified, old rows deleted', async () => {
    const before = await first.as(first.viewer).get('/projects?limit=100')
    expect(before.statusCode).toBe(200)
    const readers = continuousReads(() => first.as(first.viewer).get('/projects?limit=100'), before)
    let tally: ReadTally
    let there: Awaited<ReturnType<TenantMover['moveTenant']>>
    let back: Awaited<ReturnType<TenantMover['moveTenant']>>
    try {
      await new Promise((r) => setTimeout(r, 200))
      const cmd = await cli(['tenants', 'move', first.slug, '--server', 'second'])
      expect(cmd, cmd.stderr).toMatchObject({ code: 0 })
      expect(cmd.stdout).toMatch(new RegExp(`^${first.slug}: moved from shared on default to shared on second \\(${ctx.env.name}_shared\\)`))
      there = (await services().mover.get((await lastMove(first.id))!))!
      await waitFor(async () => (await portOf(first.id)) === '55433', { message: 'reads served by the second server' })
      await new Promise((r) => setTimeout(r, 300))
      back = await services().mover.moveTenant(first.slug, { target: { isolation: 'shared', server: 'default' } })
      await waitFor(async () => (await portOf(first.id)) === '5432', { message: 'reads served by the default server again' })
      await new Promise((r) => setTimeout(r, 200))
    } finally {
      tally = await readers.stop()
    }
    const { reads, failed } = tally
    const [f1, f2] = [moveFigures(there!), moveFigures(back!)]
    console.log(
      `shared server moves under read load: ${reads} reads, ${failed} failed; there: writes paused ${f1.writePauseMs} ms, ${f1.totalMs} ms in all; ` +
        `back: ${f2.writePauseMs} ms, ${f2.totalMs} ms`,
    )
    expect(there!).toMatchObject({ state: 'done', fromIsolation: 'shared', toIsolation: 'shared', fromServer: 'default', toServer: 'second' })
    expect(back).toMatchObject({ state: 'done', fromServer: 'second', toServer: 'default' })
    expect(failed, JSON.stringify(tally.statuses)).toBe(0)
    expect(reads).toBeGreaterThan(10)
    // Its rows left the second server's shared database with it; writes work again.
    expect(await asSuperuser(async (sql) => (await sql`select 1 from projects where tenant_id = ${first.id}`).length)).toBe(0)
    expect((await first.as(first.editor).post('/projects', { name: 'after the moves' })).statusCode).toBe(201)
  }, 90_000)

  it("a fleet migration migrates (and sharedifies) the second server's shared database too", async () => {
    const forced = () =>
      asSuperuser(async (sql) => (await sql<{ f: boolean }[]>`select relforcerowsecurity as f from pg_class where relname = 'projects'`)[0]!.f)
    // Row-level security no longer forced there (a hand edit, a migration that rebuilt the table): the
    // whole-fleet run migrates and sharedifies that database again, which puts it back.
    await asSuperuser((sql) => sql`alter table projects no force row level security`)
    expect(await forced()).toBe(false)
    const { provisioner } = services()
    const summary = await migrateFleet({
      host: services().host,
      catalog: services().catalog,
      pools: services().pools,
      config: ctx.env.config,
      logger,
      shared: provisioner.shared,
      servers: provisioner.servers,
    })
    expect(summary.failed).toBe(0)
    expect(await forced()).toBe(true)
  })

  it('drains the second server: its shared tenants move to the default server, rows intact, none left there', async () => {
    const res = await cli(['tenants', 'servers', 'drain', 'second', '--inline'])
    expect(res, res.stderr).toMatchObject({ code: 0 })
    expect(res.stdout).toMatch(new RegExp(`\\n${onSecond.slug}: moved to default`))
    expect(res.stdout).toMatch(new RegExp(`\\n${neighbour.slug}: moved to default`))
    expect(res.stdout).toMatch(/\n2 tenant\(s\) moved, 0 left\n/)
    expect(await services().host.db.select().from(tenants).where(eq(tenants.server, 'second'))).toEqual([])
    expect(await asSuperuser(async (sql) => (await sql`select 1 from projects`).length)).toBe(0)
    const mine = await onSecond.as(onSecond.viewer).get('/projects?limit=100')
    expect(JSON.stringify(mine.json())).toContain('written on second')
    expect(await portOf(onSecond.id)).toBe('5432')
    // Draining: no new shared tenant goes there.
    expect((await services().provisioner.provision({ slug: 'after-drain', name: 'A' })).server).toBe('default')
  }, 90_000)
})

async function lastMove(tenantId: string): Promise<string | undefined> {
  const rows = await ctx.app.host.sql<{ id: string }[]>`select id from core_tenant_moves where tenant_id = ${tenantId} order by created_at desc limit 1`
  return rows[0]?.id
}
