/**
 * Several Postgres servers (core_db_servers): a second real cluster on 127.0.0.1:55433 (.ci/second-postgres,
 * started here when it is not up), registered with the CLI; placement by role, load and capacity; tenant
 * databases created on their server from that server's own template; a budget per server in the pool
 * manager; drain; hard delete on the right server.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dbServers, tenants } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { checkConnectionBudget } from '../../src/core/db/connection-budget.js'
import { MIGRATIONS } from '../../src/core/db/migrations.js'
import { migrateFleet } from '../../src/core/tenancy/fleet.js'
import { createPoolManager } from '../../src/core/tenancy/pool-manager.js'
import { defaultPlacement } from '../../src/core/tenancy/servers.js'
import { createServices, type Services } from '../../src/services.js'
import { APP_URL } from '../helpers/env.js'
import { dropOnSecondServer, ensureSecondServer, SECOND_ADMIN_URL, SECOND_APP_URL } from '../helpers/second-server.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const unavailable = await ensureSecondServer()
if (unavailable) console.warn(`servers.test.ts skipped: ${unavailable}`)

const logger = pino({ level: 'silent' })
let env: TestEnv
let services: Services

beforeAll(async () => {
  if (unavailable) return
  env = await createTestEnv()
  services = createServices(env.config, logger)
})
afterAll(async () => {
  await services?.close()
  if (env) await dropOnSecondServer(env.name)
  await env?.cleanup()
})

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io = { out: (l: string) => (stdout += `${l}\n`), err: (l: string) => (stderr += `${l}\n`) }
  const code = await runCli(args, { config: env.config, logger, io })
  return { code, stdout, stderr }
}

async function databasesOn(adminUrl: string): Promise<string[]> {
  const sql = connect(adminUrl, { max: 1 })
  try {
    const rows = await sql<{ datname: string }[]>`select datname from pg_database where datname like ${`${env.name}\\_%`} order by 1`
    return rows.map((r) => r.datname)
  } finally {
    await sql.end()
  }
}

const rowOf = async (slug: string) => (await services.host.db.select().from(tenants).where(eq(tenants.slug, slug)))[0]!

describe('placement policy', () => {
  const load = (name: string, role: 'shared' | 'dedicated', tenants: number, capacity: number | null, status: 'active' | 'draining' = 'active') => ({
    name,
    role,
    status,
    tenants,
    capacity,
    hostsShared: false,
    sharedTenants: 0,
  })
  const req = { tenantId: 'x', slug: 'x', planTier: 'free', isolation: 'database' as const }

  it('prefers dedicated servers, then the least full, and skips full or draining ones', () => {
    expect(defaultPlacement(req, [load('default', 'shared', 0, null), load('a', 'dedicated', 5, 10)])).toBe('a')
    expect(defaultPlacement(req, [load('a', 'dedicated', 8, 10), load('b', 'dedicated', 3, 10)])).toBe('b')
    expect(defaultPlacement(req, [load('a', 'dedicated', 10, 10), load('default', 'shared', 40, null)])).toBe('default')
    expect(defaultPlacement(req, [load('a', 'dedicated', 1, 10, 'draining'), load('default', 'shared', 40, null)])).toBe('default')
    expect(defaultPlacement(req, [load('a', 'dedicated', 10, 10)])).toBeUndefined()
  })
})

describe.skipIf(unavailable)('several Postgres servers', () => {
  it("starts with the config's server as the 'default' row, and adds a second through the CLI after checking it", async () => {
    const [def] = await services.host.db.select().from(dbServers)
    expect(def).toMatchObject({ name: 'default', role: 'shared', status: 'active', adminUrlEncrypted: null })

    const bad = await run(['tenants', 'servers', 'add', 'nope', '--url', 'postgres://tenantkit_app:wrong@127.0.0.1:1/postgres'])
    expect(bad.code).toBe(1)
    const tooBig = await run(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--max-connections', '500'])
    expect(tooBig).toMatchObject({ code: 1 })
    expect(tooBig.stderr).toMatch(/does not fit its max_connections 100/)
    // A pooler where nothing listens: refused before anything is added.
    const noPooler = await run(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--pooler-url', 'postgres://127.0.0.1:1'])
    expect(noPooler).toMatchObject({ code: 1 })
    expect(noPooler.stderr).toMatch(/the pooler at 127\.0\.0\.1:1 did not accept a connection.*INVALID_SERVER/)
    expect(await services.host.db.select().from(dbServers).where(eq(dbServers.name, 'second'))).toEqual([])

    const added = await run(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL, '--role', 'dedicated', '--capacity', '2', '--max-connections', '4'])
    expect(added).toMatchObject({ code: 0, stderr: '' })
    expect(added.stdout).toBe('added server second (dedicated) at 127.0.0.1:55433\n')
    const again = await run(['tenants', 'servers', 'add', 'second', '--url', SECOND_APP_URL])
    expect(again.stderr).toMatch(/SERVER_EXISTS/)

    // The admin URL is encrypted at rest, like a tenant's database URL.
    const [row] = await services.host.db.select().from(dbServers).where(eq(dbServers.name, 'second'))
    expect(row!.adminUrlEncrypted).not.toContain('55433')
    expect((await services.provisioner.servers.get('second')).adminUrl).toBe(SECOND_APP_URL)
  })

  it("checks every server's budget at boot against its own max_connections", async () => {
    await expect(checkConnectionBudget(env.config, services.host.sql)).resolves.toBeUndefined()
    // The server's max_connections (100) cannot hold a budget of 500 per process: the boot check says which server.
    await services.host.db.update(dbServers).set({ maxConnections: 500 }).where(eq(dbServers.name, 'second'))
    try {
      await expect(checkConnectionBudget(env.config, services.host.sql)).rejects.toThrow(/database server "second": a budget of 500/)
    } finally {
      await services.host.db.update(dbServers).set({ maxConnections: 4 }).where(eq(dbServers.name, 'second'))
    }
  })

  it('places database tenants on the dedicated server until it is full, each created from its own server\'s template', async () => {
    const a = await services.provisioner.provision({ slug: 'on-second-a', name: 'A' })
    const b = await services.provisioner.provision({ slug: 'on-second-b', name: 'B' })
    // Capacity 2 reached: the next goes to the default server (role shared, no capacity).
    const c = await services.provisioner.provision({ slug: 'on-default-c', name: 'C' })
    expect([a.server, b.server, c.server]).toEqual(['second', 'second', 'default'])
    expect([a.status, b.status, c.status]).toEqual(['active', 'active', 'active'])

    const onSecond = await databasesOn(SECOND_ADMIN_URL)
    expect(onSecond).toEqual(expect.arrayContaining([a.dbName, b.dbName, expect.stringMatching(new RegExp(`^${env.name}_tpl_[0-9a-f]{12}$`))]))
    expect(onSecond).not.toContain(c.dbName)
    expect(await databasesOn(withDatabase(APP_URL, 'postgres'))).toContain(c.dbName)

    // Served through the catalog and the pool manager from its own server: the owner-less seed row is there.
    const record = await services.catalog.get('on-second-a')
    expect(record).toMatchObject({ server: 'second', dbUrl: withDatabase(SECOND_APP_URL, a.dbName) })
    const port = await services.pools.withTenant(record!, async (db) => (await db.$client`select current_setting('port') as port, count(*)::int as n from core_settings`)[0])
    expect(port).toEqual({ port: '55433', n: 1 })
    expect(services.pools.stats().servers.second).toMatchObject({ openPools: 1, budget: 4 })

    const list = await run(['tenants', 'list'])
    expect(list.stdout).toMatch(/\non-second-a\s+A\s+active\s+free\s+database\s+second\s/)
    expect(list.stdout).toMatch(/\non-default-c\s+C\s+active\s+free\s+database\s+default\s/)
    const servers = await run(['tenants', 'servers', 'list'])
    expect(servers.stdout.split('\n')[0]).toMatch(/^NAME\s+ROLE\s+STATUS\s+TENANTS\s+SHARED\s+CAPACITY\s+BUDGET\s+HOST\s+POOLER\s+REACHABLE$/)
    expect(servers.stdout).toMatch(/\ndefault\s+shared\s+active\s+1\s+-\s+-\s+\d+\s+127\.0\.0\.1:5432\s+-\s+yes\n/)
    expect(servers.stdout).toMatch(/\nsecond\s+dedicated\s+active\s+2\s+-\s+2\s+4\s+127\.0\.0\.1:55433\s+-\s+yes\n/)
  })

  it('migrates tenants on every server (fleet migrations use each catalog row\'s own URL)', async () => {
    // A copy of migrations/tenant with one more migration: a deploy with a new tenant migration.
    const folder = await mkdtemp(join(tmpdir(), 'tk-tenant-migrations-'))
    await cp(MIGRATIONS.tenant, folder, { recursive: true })
    const journalPath = join(folder, 'meta/_journal.json')
    const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: { idx: number; when: number; tag: string }[] }
    const last = journal.entries.at(-1)!
    const tag = `${String(last.idx + 1).padStart(4, '0')}_test_servers`
    journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag })
    await writeFile(journalPath, JSON.stringify(journal, null, 2))
    await writeFile(join(folder, `${tag}.sql`), 'ALTER TABLE "projects" ADD COLUMN "server_test" text;')
    try {
      const summary = await migrateFleet(
        { host: services.host, catalog: services.catalog, pools: services.pools, config: services.config, logger, folder },
        { tenants: ['on-second-a', 'on-default-c'] },
      )
      expect(summary).toMatchObject({ version: tag, migrated: 2, failed: 0 })
      const hasColumn = async (url: string) => {
        const sql = connect(url, { max: 1 })
        try {
          return (await sql`select 1 from information_schema.columns where table_name = 'projects' and column_name = 'server_test'`).length === 1
        } finally {
          await sql.end()
        }
      }
      expect(await hasColumn(withDatabase(SECOND_APP_URL, (await rowOf('on-second-a')).dbName))).toBe(true)
      expect(await hasColumn(withDatabase(APP_URL, (await rowOf('on-default-c')).dbName))).toBe(true)
      expect(await rowOf('on-second-a')).toMatchObject({ migrationVersion: tag, migrationStatus: 'current' })
    } finally {
      await rm(folder, { recursive: true, force: true })
    }
  })

  it('provisions on the server asked for, and refuses an unknown or draining one', async () => {
    await services.host.db.update(dbServers).set({ capacity: null }).where(eq(dbServers.name, 'second'))
    const asked = await run(['tenants', 'provision', 'asked-default', '--server', 'default'])
    expect(asked.stdout).toMatch(/on server default/)
    expect((await rowOf('asked-default')).server).toBe('default')
    await expect(services.provisioner.provision({ slug: 'nowhere', name: 'N', server: 'nowhere' })).rejects.toMatchObject({ code: 'SERVER_NOT_FOUND' })

    // Draining only (test/tenancy/server-moves.test.ts drains with the CLI, which also moves the tenants away).
    await services.provisioner.servers.setStatus('second', 'draining')
    await expect(services.provisioner.provision({ slug: 'drained', name: 'D', server: 'second' })).rejects.toMatchObject({ code: 'SERVER_DRAINING' })
    // Placement skips it: with the dedicated server draining, new tenants go to the default one.
    expect((await services.provisioner.provision({ slug: 'while-draining', name: 'W' })).server).toBe('default')
    expect(await run(['tenants', 'servers', 'activate', 'second'])).toMatchObject({ code: 0 })
    expect((await services.provisioner.provision({ slug: 'after-drain', name: 'W' })).server).toBe('second')
  })

  it('drops a hard-deleted tenant\'s database on its own server', async () => {
    const t = await rowOf('after-drain')
    expect(await databasesOn(SECOND_ADMIN_URL)).toContain(t.dbName)
    await services.provisioner.run('hardDeleted', 'after-drain')
    expect(await databasesOn(SECOND_ADMIN_URL)).not.toContain(t.dbName)
  })

  it('keeps a connection budget per server: a full server makes its own tenants wait, never another server\'s', async () => {
    const a = (await services.catalog.get('on-second-a'))!
    const b = (await services.catalog.get('on-second-b'))!
    const c = (await services.catalog.get('on-default-c'))!
    const pools = createPoolManager({
      maxPerTenant: 1,
      maxTenants: 100,
      idleTimeoutS: 60,
      connectionBudget: 10,
      serverBudget: (server) => (server === 'second' ? 1 : undefined),
      acquireTimeoutMs: 400,
    })
    try {
      const held = await pools.acquire(a)
      await held.db.$client`select 1`
      // b is on the same full server: it waits, and times out while a's lease is held ...
      const waiting = pools.acquire(b).then(
        () => 'granted',
        (err: { code?: string }) => err.code,
      )
      // ... while c, on the default server, is served at once, though it asked later.
      const started = performance.now()
      const onDefault = await pools.withTenant(c, async (db) => (await db.$client`select current_setting('port') as port`)[0]!.port)
      expect(onDefault).toBe('5432')
      expect(performance.now() - started).toBeLessThan(300)
      expect(pools.stats().servers.second).toMatchObject({ reservedConnections: 1, budget: 1, waiters: 1 })
      expect(await waiting).toBe('POOL_EXHAUSTED')
      const stats = pools.stats()
      expect(stats.servers.second!.starved).toBe(true)
      expect(stats.servers.default).toMatchObject({ starved: false, budget: 10 })
      // Released: b gets the slot (a's idle pool on the same server is closed to make room).
      held.release()
      expect(await pools.withTenant(b, async (db) => (await db.$client`select current_setting('port') as port`)[0]!.port)).toBe('55433')
      expect(pools.stats().servers.second).toMatchObject({ reservedConnections: 1, starved: false })
    } finally {
      await pools.close()
    }
  })
})
