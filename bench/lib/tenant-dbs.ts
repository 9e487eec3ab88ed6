/**
 * Throwaway tenant databases for benchmarks: one migrated template, then clones with
 * CREATE DATABASE … TEMPLATE (tens of ms each). Every name starts with the run's prefix so
 * dropAll() removes exactly what this run made.
 */
import { connect, quoteIdent, type Sql, withDatabase } from '../../src/core/db/connect.js'
import { MIGRATIONS, runMigrations } from '../../src/core/db/migrations.js'

export const ADMIN_URL = process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const APP_ROLE = 'tenantkit_app'
export const APP_URL = (() => {
  const u = new URL(ADMIN_URL)
  return `postgres://${APP_ROLE}:${APP_ROLE}@${u.host}/postgres`
})()

/** The non-superuser role the app connects as (superusers would get the reserved connection slots). */
export async function ensureAppRole(admin: Sql): Promise<void> {
  const [role] = await admin`select 1 from pg_roles where rolname = ${APP_ROLE}`
  if (!role) await admin.unsafe(`create role ${APP_ROLE} login createdb password '${APP_ROLE}'`)
}

export async function createTenantDatabases(admin: Sql, prefix: string, count: number, concurrency = 4): Promise<string[]> {
  const template = quoteIdent(`${prefix}_base`)
  await admin.unsafe(`create database ${template} owner ${APP_ROLE}`)
  await runMigrations(withDatabase(APP_URL, `${prefix}_base`), MIGRATIONS.tenant)
  const names = Array.from({ length: count }, (_, i) => `${prefix}_t${i}`)
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < names.length) {
        const name = names[next++]!
        await admin.unsafe(`create database ${quoteIdent(name)} template ${template} owner ${APP_ROLE}`)
      }
    }),
  )
  return names
}

export async function dropAll(prefix: string): Promise<number> {
  const admin = connect(ADMIN_URL, { max: 1, applicationName: 'tenantkit-bench-cleanup' })
  try {
    const dbs = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${`${prefix}\\_%`}`
    for (const { datname } of dbs) await admin.unsafe(`drop database if exists ${quoteIdent(datname)} with (force)`)
    return dbs.length
  } finally {
    await admin.end()
  }
}

export async function connectionsTo(admin: Sql, prefix: string): Promise<number> {
  const [row] = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname like ${`${prefix}\\_t%`}`
  return row?.n ?? 0
}
