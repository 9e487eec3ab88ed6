/**
 * The shared database of shared-isolation tenants: created on first use from the same tenant migrations
 * as every tenant database, then sharedified (sharedify.ts). Its owner is the tenant server's role
 * (TENANT_DATABASE_URL), which migrates it; tenants reach it as the data role of SHARED_DATABASE_URL,
 * which row-level security binds. A tenant's erasure deletes its rows through its own handle and
 * checks that none is left.
 */
import type { Logger } from 'pino'
import { quoteIdent, type Sql, connect, withDatabase } from '../../db/connect.js'
import { MIGRATIONS, type MigrationInfo, migrationInfo, runMigrations } from '../../db/migrations.js'
import { PG, pgCode } from '../../lib/errors.js'
import type { TenantDb } from '../types.js'
import { sharedify, sharedTables } from './sharedify.js'

export interface SharedDatabase {
  /** The data role's URL (SHARED_DATABASE_URL): what shared tenants' catalog rows point at. */
  readonly url: string
  readonly dbName: string
  readonly dataRole: string
  readonly info: MigrationInfo
  /** Create it if missing, migrate and sharedify, once per process (a failure is retried on the next call). */
  ensure(): Promise<void>
  /** Migrate and sharedify now, whatever this process did before (fleet migrations). */
  migrate(): Promise<void>
  /** Delete every row of the handle's tenant, in one transaction, then check that none is left. Returns rows deleted. */
  erase(db: TenantDb): Promise<number>
  /** Rows of the handle's tenant, per table (erasure checks, tests). */
  count(db: TenantDb): Promise<Record<string, number>>
}

export interface SharedDatabaseDeps {
  /** A pool on the server's maintenance database (CREATE DATABASE, the creation lock). */
  admin: Sql
  /** The tenant server URL: the owner's credentials. */
  serverUrl: string
  /** SHARED_DATABASE_URL. */
  url: string
  folder?: string | undefined
  logger: Pick<Logger, 'info' | 'warn'>
}

/** The comment on a shared database the kit created (not one it was given): only such a database is ever dropped. */
export const SHARED_DATABASE_MARK = 'tenantkit shared database'

export function sharedDatabaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.slice(1))
  quoteIdent(name) // a plain identifier, or it throws
  return name
}

export function createSharedDatabase(deps: SharedDatabaseDeps): SharedDatabase {
  const { admin, serverUrl, url, logger } = deps
  const folder = deps.folder ?? MIGRATIONS.tenant
  const info = migrationInfo('tenant', folder)
  const dbName = sharedDatabaseName(url)
  const dataRole = decodeURIComponent(new URL(url).username)
  const ownerUrl = withDatabase(serverUrl, dbName)
  if (!dataRole) throw new Error('SHARED_DATABASE_URL must name its data role (postgres://role:password@host/db)')
  if (dataRole === decodeURIComponent(new URL(serverUrl).username)) {
    throw new Error('SHARED_DATABASE_URL must use a data role other than the tables\' owner (TENANT_DATABASE_URL\'s role): an owner can turn row-level security off')
  }
  let ready: Promise<void> | undefined

  async function create(): Promise<void> {
    const conn = await admin.reserve()
    try {
      await conn`select pg_advisory_lock(hashtext(${`tenantkit:shared:${dbName}`}))`
      try {
        const [exists] = await conn`select 1 from pg_database where datname = ${dbName}`
        if (!exists) {
          await conn.unsafe(`create database ${quoteIdent(dbName)}`).catch((err: unknown) => {
            if (pgCode(err) !== PG.duplicateDatabase) throw err
          })
          // Says the kit made it: removing its server (server-admin.ts) drops only a database carrying this.
          await conn.unsafe(`comment on database ${quoteIdent(dbName)} is '${SHARED_DATABASE_MARK}'`)
          logger.info({ database: dbName }, 'shared tenant database created')
        }
      } finally {
        await conn`select pg_advisory_unlock(hashtext(${`tenantkit:shared:${dbName}`}))`
      }
    } finally {
      conn.release()
    }
  }

  async function migrate(): Promise<void> {
    const started = performance.now()
    await create()
    await runMigrations(ownerUrl, folder)
    const owner = connect(ownerUrl, { max: 1, applicationName: 'tenantkit-sharedify' })
    try {
      const { changes } = await sharedify(owner, dataRole)
      if (changes.length) logger.info({ database: dbName, changes: changes.length, ms: Math.round(performance.now() - started) }, 'shared tenant database sharedified')
    } finally {
      await owner.end({ timeout: 5 })
    }
  }

  async function tablesInDeleteOrder(sql: Sql): Promise<string[]> {
    const tables = await sharedTables(sql)
    const edges = await sql<{ child: string; parent: string }[]>`
      select c.relname as child, p.relname as parent from pg_constraint con
      join pg_class c on c.oid = con.conrelid join pg_class p on p.oid = con.confrelid
      join pg_namespace n on n.oid = c.relnamespace
      where con.contype = 'f' and n.nspname = 'public' and c.oid <> p.oid`
    // Children before parents, so no delete waits on a foreign key.
    const order: string[] = []
    const left = new Set(tables)
    while (left.size) {
      const next = [...left].filter((t) => !edges.some((e) => e.parent === t && left.has(e.child)))
      const batch = next.length ? next : [...left] // a cycle: cascades sort it out
      for (const t of batch) {
        order.push(t)
        left.delete(t)
      }
    }
    return order
  }

  async function count(db: TenantDb): Promise<Record<string, number>> {
    const tables = await sharedTables(db.$client)
    if (!tables.length) return {}
    const union = tables.map((t) => `select '${t}' as t, count(*)::int as n from ${quoteTable(t)}`).join(' union all ')
    const rows = await db.$client.unsafe<{ t: string; n: number }[]>(union)
    return Object.fromEntries(rows.map((r) => [r.t, r.n]))
  }

  return {
    url,
    dbName,
    dataRole,
    info,
    ensure() {
      ready ??= migrate().catch((err: unknown) => {
        ready = undefined
        throw err
      })
      return ready
    },
    async migrate() {
      await migrate()
      ready = Promise.resolve()
    },
    async erase(db) {
      const order = await tablesInDeleteOrder(db.$client)
      let deleted = 0
      // Row-level security limits every delete to the handle's tenant; one transaction, all or nothing.
      await db.$client.begin(async (tx) => {
        for (const t of order) deleted += (await tx.unsafe(`delete from ${quoteTable(t)}`)).count
      })
      const left = Object.entries(await count(db)).filter(([, n]) => n > 0)
      if (left.length) throw new Error(`erasure left rows behind: ${left.map(([t, n]) => `${t} ${n}`).join(', ')}`)
      return deleted
    },
    count,
  }
}

const quoteTable = (t: string) => `"${t.replaceAll('"', '""')}"`
