/**
 * The tenant template database: a database migrated with migrations/tenant that every new tenant
 * database is cloned from (`CREATE DATABASE … TEMPLATE`, tens of ms instead of create + migrate).
 * Its name carries the hash of the tenant migrations, so a deploy with new or edited migrations builds
 * a new template on first use and drops the old ones. The template allows no connections: Postgres
 * refuses to clone a database anyone is connected to.
 */
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { quoteIdent, type Sql, withDatabase } from '../db/connect.js'
import { MIGRATIONS, type MigrationInfo, migrationInfo, runMigrations } from '../db/migrations.js'
import { pgCode } from '../lib/errors.js'

/** The server (and credentials) tenant databases live on. */
export function tenantServerUrl(config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl'>): string {
  const url = config.tenantDatabaseUrl ?? config.databaseUrl
  if (!url) throw new Error('DATABASE_URL (or TENANT_DATABASE_URL) is required to manage tenant databases')
  return url
}

/** CREATE/DROP DATABASE run from a connection to the server's maintenance database. */
export const maintenanceUrl = (config: Pick<Config, 'tenantDatabaseUrl' | 'databaseUrl'>) =>
  withDatabase(tenantServerUrl(config), 'postgres')

/** `${prefix}_${tenant id without dashes}`: at most 16 + 1 + 32 characters, always a safe identifier. */
export function tenantDbName(prefix: string, tenantId: string): string {
  const name = `${prefix}_${tenantId.replaceAll('-', '')}`
  if (name.length > 63) throw new Error(`tenant database name "${name}" is longer than Postgres' 63 characters`)
  quoteIdent(name) // throws on anything that is not a plain identifier
  return name
}

export const templateName = (prefix: string, hash: string) => `${prefix}_tpl_${hash}`

export interface TenantTemplate {
  /** The template database for the current tenant migrations. */
  readonly name: string
  readonly info: MigrationInfo
  readonly folder: string
  /** Build the template if it does not exist (once across processes). */
  ensure(): Promise<string>
  /**
   * Drop the templates of other migration versions. Not done by ensure(): during a rolling deploy old
   * and new processes would drop each other's template and rebuild it on every provisioning. The
   * operator's `tenants migrate`, run once the new version is out, calls this.
   */
  dropStale(): Promise<string[]>
}

export interface TemplateDeps {
  /** A pool on the maintenance database (see maintenanceUrl). */
  admin: Sql
  serverUrl: string
  prefix: string
  /** The tenant migrations folder; tests point it at a temporary copy with extra migrations. */
  folder?: string
  logger: Logger
}

export function createTemplate(deps: TemplateDeps): TenantTemplate {
  const { admin, serverUrl, prefix, logger } = deps
  const folder = deps.folder ?? MIGRATIONS.tenant
  const info = migrationInfo('tenant', folder)
  const name = templateName(prefix, info.hash)
  const building = `${name}_build`
  // Advisory locks live per database; every process takes this one on the maintenance database.
  const lockKey = `tenantkit:template:${prefix}`
  const ours = `^${prefix}_tpl_[0-9a-f]{12}(_build)?$`

  const exists = async (sql: Sql, db: string) => (await sql`select 1 from pg_database where datname = ${db}`).length > 0

  async function build(sql: Sql): Promise<void> {
    const started = performance.now()
    // A build that died halfway left this behind; the finished template only ever appears by rename.
    await sql.unsafe(`drop database if exists ${quoteIdent(building)} with (force)`)
    await sql.unsafe(`create database ${quoteIdent(building)}`)
    await runMigrations(withDatabase(serverUrl, building), folder)
    await sql.unsafe(`alter database ${quoteIdent(building)} rename to ${quoteIdent(name)}`)
    await sql.unsafe(`alter database ${quoteIdent(name)} with allow_connections false`)
    try {
      await sql.unsafe(`alter database ${quoteIdent(name)} is_template true`)
    } catch (err) {
      // Not essential: the owner may clone its own database anyway.
      if (pgCode(err) !== '42501') throw err
    }
    logger.info({ template: name, version: info.version, ms: Math.round(performance.now() - started) }, 'tenant template built')
  }

  async function dropStale(sql: Sql): Promise<string[]> {
    const stale = await sql<{ datname: string }[]>`select datname from pg_database where datname ~ ${ours} and datname <> ${name}`
    for (const { datname } of stale) {
      await sql.unsafe(`alter database ${quoteIdent(datname)} is_template false`).catch(() => {})
      await sql.unsafe(`drop database if exists ${quoteIdent(datname)} with (force)`)
      logger.info({ template: datname }, 'stale tenant template dropped')
    }
    return stale.map((s) => s.datname)
  }

  /** Run fn holding the template lock (one builder or dropper at a time, across processes). */
  async function locked<T>(fn: (conn: Sql) => Promise<T>): Promise<T> {
    const conn = await admin.reserve()
    try {
      await conn`select pg_advisory_lock(hashtext(${lockKey}))`
      try {
        return await fn(conn as unknown as Sql)
      } finally {
        await conn`select pg_advisory_unlock(hashtext(${lockKey}))`
      }
    } finally {
      conn.release()
    }
  }

  return {
    name,
    info,
    folder,
    async ensure() {
      if (await exists(admin, name)) return name
      await locked(async (conn) => {
        if (!(await exists(conn, name))) await build(conn)
      })
      return name
    },
    // No build lock needed: each drop is atomic, and this version's own template is never touched.
    dropStale: () => dropStale(admin),
  }
}
