import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Sql, withDatabase } from '../../src/core/db/connect.js'
import { MIGRATIONS, migrationInfo } from '../../src/core/db/migrations.js'
import { createServices, type Services } from '../../src/services.js'
import { createProvisioner } from '../../src/core/tenancy/provisioning.js'
import { createTemplate, maintenanceUrl, templateName, tenantDbName, tenantServerUrl } from '../../src/core/tenancy/template.js'
import { APP_URL } from '../helpers/env.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

let env: TestEnv
let services: Services
const admins: Sql[] = []
const tmpDirs: string[] = []
const logs: { msg: string; template?: string }[] = []
const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) })

beforeAll(async () => {
  env = await createTestEnv()
  services = createServices(env.config, pino({ level: 'silent' }))
})
afterAll(async () => {
  await Promise.all(admins.map((a) => a.end()))
  await services?.close()
  await env?.cleanup()
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })))
})

/** A copy of migrations/tenant with one more migration: what a deploy with a new tenant migration looks like. */
async function migrationsWithExtra(sql: string): Promise<{ folder: string; tag: string }> {
  const folder = await mkdtemp(join(tmpdir(), 'tk-tenant-migrations-'))
  tmpDirs.push(folder)
  await cp(MIGRATIONS.tenant, folder, { recursive: true })
  const journalPath = join(folder, 'meta/_journal.json')
  const journal = JSON.parse(await readFile(journalPath, 'utf8')) as { entries: { idx: number; when: number; tag: string }[] }
  const last = journal.entries.at(-1)!
  const tag = `${String(last.idx + 1).padStart(4, '0')}_test_extra`
  journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag })
  await writeFile(journalPath, JSON.stringify(journal, null, 2))
  await writeFile(join(folder, `${tag}.sql`), sql)
  return { folder, tag }
}

function templateFor(folder?: string) {
  const admin = connect(maintenanceUrl(env.config), { max: 2 })
  admins.push(admin)
  return createTemplate({ admin, serverUrl: tenantServerUrl(env.config), prefix: env.config.tenantDbPrefix, folder, logger })
}

async function templates(): Promise<{ datname: string; datistemplate: boolean; datallowconn: boolean }[]> {
  return services.host.sql`
    select datname, datistemplate, datallowconn from pg_database where datname like ${`${env.name}\\_tpl\\_%`} order by datname`
}

const built = () => logs.filter((l) => l.msg === 'tenant template built').map((l) => l.template)

describe('tenant template', () => {
  it('names tenant databases within Postgres limits', () => {
    const id = '01900000-0000-7000-8000-000000000000'
    expect(tenantDbName('tk', id)).toBe('tk_01900000000070008000000000000000')
    expect(() => tenantDbName('p'.repeat(31), id)).toThrow(/63/)
  })

  it('is built once across concurrent callers, marked as a template and closed to connections', async () => {
    const a = templateFor()
    const b = templateFor()
    expect(a.name).toBe(templateName(env.name, migrationInfo('tenant').hash))
    const names = await Promise.all([a.ensure(), b.ensure(), a.ensure()])
    expect(new Set(names)).toEqual(new Set([a.name]))
    expect(built()).toEqual([a.name])
    expect(await templates()).toEqual([{ datname: a.name, datistemplate: true, datallowconn: false }])
    // Nothing can hold a connection to it (which would make every clone fail).
    const probe = connect(withDatabase(APP_URL, a.name), { max: 1 })
    await expect(probe`select 1`).rejects.toMatchObject({ code: '55000' })
    await probe.end()
    await b.ensure()
    expect(built()).toHaveLength(1)
  })

  it('is rebuilt when the tenant migrations change; old and new coexist until dropStale', async () => {
    const old = templateFor()
    await old.ensure()
    const { folder, tag } = await migrationsWithExtra('ALTER TABLE "projects" ADD COLUMN "code" text;')
    const next = templateFor(folder)
    expect(next.name).not.toBe(old.name)
    expect(next.info.version).toBe(tag)
    await next.ensure()
    // A rolling deploy: the old version's processes keep their template, the new ones get theirs.
    await old.ensure()
    expect((await templates()).map((t) => t.datname).sort()).toEqual([old.name, next.name].sort())
    expect(await next.dropStale()).toEqual([old.name])
    expect(await templates()).toEqual([{ datname: next.name, datistemplate: true, datallowconn: false }])

    // New tenants come from the new template: the new column is there and the catalog records the new version.
    const provisioner = createProvisioner({
      host: services.host,
      catalog: services.catalog,
      tasks: services.tasks,
      lifecycle: services.lifecycle,
      pools: services.pools,
      config: env.config,
      logger: pino({ level: 'silent' }),
      migrationsFolder: folder,
    })
    try {
      const t = await provisioner.provision({ slug: 'after-deploy', name: 'After' })
      expect(t).toMatchObject({ status: 'active', migrationVersion: tag, migrationStatus: 'current' })
      const sql = connect(withDatabase(APP_URL, t.dbName), { max: 1 })
      const cols = await sql`select column_name from information_schema.columns where table_name = 'projects' and column_name = 'code'`
      const applied = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`
      await sql.end()
      expect(cols).toHaveLength(1)
      expect(applied[0]?.n).toBe(next.info.tags.length)
    } finally {
      await provisioner.close()
    }
  })

  it('replaces a half-built template left by a crashed build', async () => {
    const { folder } = await migrationsWithExtra('ALTER TABLE "projects" ADD COLUMN "code2" text;')
    const t = templateFor(folder)
    // What a build that died after CREATE DATABASE leaves behind: an empty, unmigrated database.
    await services.host.sql.unsafe(`create database "${t.name}_build"`)
    await t.ensure()
    const names = (await templates()).map((r) => r.datname)
    expect(names).toContain(t.name)
    expect(names).not.toContain(`${t.name}_build`)
  })
})
