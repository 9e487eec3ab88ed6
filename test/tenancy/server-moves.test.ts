/**
 * Moving tenants between Postgres servers (core_db_servers) on the move machinery: a tenant read over HTTP
 * all along while it moves to the second cluster (127.0.0.1:55433) answers every read (0 failed), its
 * rows arrive verified and the old database is gone; then `tenants servers drain` moves every database
 * tenant off that server as tenants.move jobs, which a worker runs.
 */
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import * as tenantSchema from '../../drizzle/tenant/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { moveFigures, type TenantMover } from '../../src/core/tenancy/move/index.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { APP_URL, SHARED } from '../helpers/env.js'
import { dropOnSecondServer, ensureSecondServer, SECOND_ADMIN_URL, SECOND_APP_URL } from '../helpers/second-server.js'
import { type TenantFixture, tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'
import { continuousReads, type ReadTally } from '../helpers/continuous-reads.js'

const unavailable = await ensureSecondServer()
if (unavailable) console.warn(`server-moves.test.ts skipped: ${unavailable}`)

// Tenants with a database of their own (the free plan's isolation would otherwise be shared).
const ctx = useApp({ ...SHARED, TENANT_ISOLATION: 'database' })
const services = () => ctx.app.services
let t: TenantFixture
let worker: WorkerRuntime | undefined

beforeAll(async () => {
  if (unavailable) return
  // Made before the second server exists: it starts on the default one.
  t = await tenantWith(ctx.app, { project: 'first' })
  await services().pools.withTenant((await services().catalog.get(t.id))!, (db) =>
    db.insert(tenantSchema.projects).values(Array.from({ length: 5 }, (_, i) => ({ name: `P ${i}` }))),
  )
  await services().provisioner.servers.add({ name: 'second', adminUrl: SECOND_APP_URL, role: 'dedicated' })
})
afterAll(async () => {
  await worker?.close(5000)
  if (ctx.env) await dropOnSecondServer(ctx.env.name)
})

async function databasesOn(adminUrl: string): Promise<string[]> {
  const sql = connect(adminUrl, { max: 1 })
  try {
    return (await sql<{ datname: string }[]>`select datname from pg_database where datname like ${`${ctx.env.name}\\_%`}`).map((r) => r.datname)
  } finally {
    await sql.end()
  }
}
const portOf = async (id: string) =>
  services().pools.withTenant((await services().catalog.get(id))!, async (db) => (await db.$client`select current_setting('port') as port`)[0]!.port)

describe.skipIf(unavailable)('moving tenants between servers', () => {
  it('moves a tenant to the second server under read load: every read answered, rows verified, the old database dropped', async () => {
    const before = await t.as(t.viewer).get('/projects?limit=100')
    expect(before.statusCode).toBe(200)
    expect(await portOf(t.id)).toBe('5432')
    const dbName = t.tenant.dbName

    // Two readers, a request every 50 ms each (under the free plan's 600 a minute), from before the move until after it.
    const readers = continuousReads(() => t.as(t.viewer).get('/projects?limit=100'), before)
    let tally: ReadTally
    let move: Awaited<ReturnType<TenantMover['moveTenant']>>
    try {
      await new Promise((r) => setTimeout(r, 200))
      move = await services().mover.moveTenant(t.slug, { target: { isolation: 'database', server: 'second' } })
      // Reads keep going a little after the switch: they reach the new server.
      await waitFor(async () => (await portOf(t.id)) === '55433', { message: 'reads served by the second server' })
      await new Promise((r) => setTimeout(r, 200))
    } finally {
      tally = await readers.stop()
    }

    const { reads, failed } = tally
    const f = moveFigures(move)
    console.log(
      `server move under read load: ${reads} reads, ${failed} failed; ${f.rows} rows, writes paused ${f.writePauseMs} ms, ${f.totalMs} ms in all`,
    )
    expect(move).toMatchObject({ state: 'done', fromServer: 'default', toServer: 'second' })
    expect(failed, JSON.stringify(tally.statuses)).toBe(0)
    expect(reads).toBeGreaterThan(10)

    const [row] = await services().host.db.select().from(tenants).where(eq(tenants.id, t.id))
    expect(row).toMatchObject({ server: 'second', dbName, movingSince: null })
    expect(services().provisioner.writes.dbUrl(row!)).toBe(withDatabase(SECOND_APP_URL, dbName))
    expect(await databasesOn(SECOND_ADMIN_URL)).toContain(dbName)
    expect(await databasesOn(withDatabase(APP_URL, 'postgres'))).not.toContain(dbName)
    // Writes work again, on the new server.
    const write = await t.as(t.editor).post('/projects', { name: 'after the move' })
    expect(write.statusCode, write.body).toBe(201)
  }, 60_000)

  it('refuses a move to an unknown server (400 UNKNOWN_SERVER), and to where the tenant is (409)', async () => {
    await expect(services().mover.start(t.slug, { target: { isolation: 'database', server: 'nope' } })).rejects.toMatchObject({
      statusCode: 400,
      code: 'UNKNOWN_SERVER',
    })
    await expect(services().mover.start(t.slug, { target: { isolation: 'database', server: 'second' } })).rejects.toMatchObject({
      code: 'MOVE_NOT_NEEDED',
    })
  })

  it('a shared tenant moved to a database of its own goes where placement puts it (the dedicated server)', async () => {
    const small = await services().provisioner.provision({ slug: 'upgraded', name: 'Upgraded', isolation: 'shared' })
    expect(small.server).toBe('default')
    const move = await services().mover.moveTenant('upgraded', { target: { isolation: 'database' } })
    expect(move).toMatchObject({ state: 'done', fromIsolation: 'shared', toIsolation: 'database', toServer: 'second' })
    expect((await services().catalog.get('upgraded'))!.server).toBe('second')
    expect(await portOf(small.id)).toBe('55433')
    // A database already: naming no server keeps it where it is.
    await expect(services().mover.start('upgraded', { target: { isolation: 'database' } })).rejects.toMatchObject({ code: 'MOVE_NOT_NEEDED' })
  })

  it('drains the second server: every database tenant on it moved away as tenants.move jobs, none placed there again', async () => {
    // Placed by the policy: the dedicated server first.
    const other = await services().provisioner.provision({ slug: 'placed-second', name: 'Placed' })
    expect(other.server).toBe('second')
    worker = await startWorkers(services(), { scopes: ['system'], concurrency: 2 })

    let stdout = ''
    const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stdout += `ERR ${l}\n`) }
    const code = await runCli(['tenants', 'servers', 'drain', 'second'], { config: ctx.env.config, logger: pino({ level: 'silent' }), io })
    expect(code, stdout).toBe(0)
    expect(stdout).toMatch(new RegExp(`\\n${t.slug}: move to default queued \\(move [0-9a-f-]{36}, job [0-9a-f-]{36}\\)\\n`))
    expect(stdout).toMatch(/\nplaced-second: move to default queued/)
    expect(stdout).toMatch(/\nupgraded: move to default queued/)
    expect(stdout).toMatch(/\n3 tenant\(s\) queued to move, 0 left\n/)

    await waitFor(
      async () => (await services().host.db.select().from(tenants).where(eq(tenants.server, 'second'))).length === 0,
      { timeout: 60_000, message: 'every tenant moved off the drained server' },
    )
    // Then each move's cleanup drops the old database, and its record ends done.
    await waitFor(
      async () => {
        const left = await databasesOn(SECOND_ADMIN_URL)
        return !left.includes(other.dbName) && !left.includes(t.tenant.dbName)
      },
      { timeout: 30_000, message: 'the drained databases dropped' },
    )
    await waitFor(async () => (await services().mover.openFor(other.id)) === undefined, { message: 'the move closed' })
    await waitFor(async () => (await portOf(t.id)) === '5432')
    const read = await t.as(t.viewer).get('/projects?limit=100')
    expect(read.statusCode).toBe(200)
    expect(read.json().items ?? read.json()).toBeDefined()
    // Draining: placement skips it.
    expect((await services().provisioner.provision({ slug: 'after-drain', name: 'A' })).server).toBe('default')
  }, 90_000)
})
