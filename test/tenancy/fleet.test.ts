import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenants } from '../../drizzle/host/schema.js'
import { runCli } from '../../src/cli.js'
import { connect, withDatabase } from '../../src/core/db/connect.js'
import { MIGRATIONS, migrationInfo } from '../../src/core/db/migrations.js'
import { createServices, type Services } from '../../src/services.js'
import { type FleetDeps, listBehind, migrateFleet, type TenantMigrationResult } from '../../src/core/tenancy/fleet.js'
import type { ProvisionedTenant } from '../../src/core/tenancy/provisioning.js'
import { APP_URL } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const logger = pino({ level: 'silent' })
let env: TestEnv
let services: Services
let deps: FleetDeps
let folder: string
let tag: string
const t: Record<string, ProvisionedTenant> = {}

/** A copy of migrations/tenant with one more migration: what a deploy with a new tenant migration looks like. */
async function migrationsWithExtra(sql: string): Promise<{ folder: string; tag: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tk-tenant-migrations-'))
  await cp(MIGRATIONS.tenant, dir, { recursive: true })
  const journalPath = join(dir, 'meta/_journal.json')
  const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: { idx: number; when: number; tag: string }[] }
  const last = journal.entries.at(-1)!
  const next = `${String(last.idx + 1).padStart(4, '0')}_test_add_project_code`
  journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag: next })
  await writeFile(journalPath, JSON.stringify(journal, null, 2))
  await writeFile(join(dir, `${next}.sql`), sql)
  return { folder: dir, tag: next }
}

async function inTenantDb<T>(dbName: string, fn: (sql: ReturnType<typeof connect>) => Promise<T>): Promise<T> {
  const sql = connect(withDatabase(APP_URL, dbName), { max: 1 })
  try {
    return await fn(sql)
  } finally {
    await sql.end()
  }
}

const row = async (id: string) => (await services.host.db.select().from(tenants).where(eq(tenants.id, id)))[0]!
const outcomes = (results: TenantMigrationResult[]) => Object.fromEntries(results.map((r) => [r.slug, r.outcome]))

beforeAll(async () => {
  env = await createTestEnv()
  services = createServices(env.config, logger)
  for (const slug of ['fleet-a', 'fleet-b', 'fleet-c', 'fleet-d']) {
    t[slug] = await services.provisioner.provision({ slug, name: slug })
  }
  await services.provisioner.run('suspended', 'fleet-d') // suspended tenants are migrated too
  ;({ folder, tag } = await migrationsWithExtra('ALTER TABLE "projects" ADD COLUMN "code" text;'))
  deps = { host: services.host, catalog: services.catalog, pools: services.pools, config: env.config, logger, folder }
})
afterAll(async () => {
  await services?.close()
  await env?.cleanup()
  if (folder) await rm(folder, { recursive: true, force: true })
})

describe('fleet migrations', () => {
  it('skips tenants already current without connecting to them', async () => {
    expect(await listBehind({ host: services.host })).toEqual([])
    // A database that refuses connections: touching it would fail the run.
    await services.host.sql.unsafe(`alter database "${t['fleet-a']!.dbName}" with allow_connections false`)
    try {
      const summary = await migrateFleet({ ...deps, folder: undefined })
      expect(summary).toMatchObject({ total: 4, skipped: 4, migrated: 0, failed: 0, notRun: 0, version: migrationInfo('tenant').version })
    } finally {
      await services.host.sql.unsafe(`alter database "${t['fleet-a']!.dbName}" with allow_connections true`)
    }
  })

  it('lists who is behind a new migration in one query', async () => {
    const behind = await listBehind({ host: services.host, folder })
    expect(behind.map((b) => b.slug)).toEqual(['fleet-a', 'fleet-b', 'fleet-c', 'fleet-d'])
    expect(behind[3]).toMatchObject({ status: 'suspended', migrationStatus: 'current' })
  })

  it('stops at the first failure unless told to continue', async () => {
    // fleet-a is broken: the column the new migration adds already exists there.
    await inTenantDb(t['fleet-a']!.dbName, (sql) => sql`alter table projects add column code text`)
    const progress: string[] = []
    const summary = await migrateFleet(deps, {
      concurrency: 1,
      onProgress: (r, done, total) => progress.push(`${done}/${total} ${r.slug}`),
    })
    expect(summary).toMatchObject({ total: 4, failed: 1, migrated: 0, notRun: 3 })
    expect(progress).toEqual(['1/4 fleet-a'])
    const a = await row(t['fleet-a']!.id)
    expect(a.migrationStatus).toBe('failed')
    expect(a.migrationError).toMatch(/column "code" of relation "projects" already exists/)
    expect((await row(t['fleet-b']!.id)).migrationStatus).toBe('current') // not run: untouched
  })

  it('with continue-on-error migrates the others and records the failure; the CLI exits 1', async () => {
    const lines: string[] = []
    const code = await runCli(['tenants', 'migrate', '--continue-on-error', '--concurrency', '2'], {
      config: env.config,
      logger,
      tenantMigrationsFolder: folder,
      io: { out: (l) => lines.push(l), err: (l) => lines.push(`ERR ${l}`) },
    })
    expect(code).toBe(1)
    expect(lines.filter((l) => l.startsWith('['))).toHaveLength(4)
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\/4\] fleet-a failed: column "code" of relation "projects" already exists/))
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[\\d/4\\] fleet-c migrated to ${tag} \\(\\d+ ms\\)$`)))
    expect(lines.at(-1)).toMatch(new RegExp(`^4 tenant\\(s\\) at ${tag}: 3 migrated, 0 already current, 1 failed, 0 not run`))

    for (const slug of ['fleet-b', 'fleet-c', 'fleet-d']) {
      const r = await row(t[slug]!.id)
      expect(r).toMatchObject({ migrationStatus: 'current', migrationVersion: tag, migrationError: null })
      expect(r.migratedAt).toBeInstanceOf(Date)
      const cols = await inTenantDb(
        r.dbName,
        (sql) => sql`select 1 from information_schema.columns where table_name = 'projects' and column_name = 'code'`,
      )
      expect(cols).toHaveLength(1)
    }
    expect((await services.catalog.get('fleet-c'))?.migrationVersion).toBe(tag)
    expect((await listBehind({ host: services.host, folder })).map((b) => [b.slug, b.migrationStatus])).toEqual([['fleet-a', 'failed']])
  })

  it('migrates chosen tenants once repaired, then has nothing left to do', async () => {
    await expect(migrateFleet(deps, { tenants: ['nope-missing'] })).rejects.toMatchObject({ statusCode: 404, code: 'TENANT_NOT_FOUND' })
    await inTenantDb(t['fleet-a']!.dbName, (sql) => sql`alter table projects drop column code`)
    const repaired = await migrateFleet(deps, { tenants: ['fleet-a'] })
    expect(outcomes(repaired.results)).toEqual({ 'fleet-a': 'migrated' })
    expect(await listBehind({ host: services.host, folder })).toEqual([])
    const again = await migrateFleet(deps)
    expect(again).toMatchObject({ total: 4, skipped: 4, migrated: 0, failed: 0 })
  })

  it('refuses to migrate a tenant whose provisioning never finished', async () => {
    await services.host.db.update(tenants).set({ status: 'failed' }).where(eq(tenants.id, t['fleet-b']!.id))
    const summary = await migrateFleet(deps, { tenants: ['fleet-b'] })
    expect(summary.results[0]).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/tenant is failed/) })
    // Not part of a whole-fleet run either.
    expect((await migrateFleet(deps)).total).toBe(3)
  })
})
