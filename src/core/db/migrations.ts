/**
 * Migration folders and their versions. drizzle-kit writes the SQL (npm run db:generate); drizzle's
 * migrator applies it. A database's version is the tag of the last journal entry it has applied.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import { connect } from './connect.js'

// src/core/db → the repository; dist/src/core/db → the directory holding dist/ (the image copies migrations/,
// config/ and content/ beside dist/). test/production-build.test.ts starts a build laid out as the image is.
const here = dirname(fileURLToPath(import.meta.url))
const root = [resolve(here, '../../..'), resolve(here, '../../../..')].find((dir) => {
  try {
    readFileSync(join(dir, 'migrations/host/meta/_journal.json'))
    return true
  } catch {
    return false
  }
})
if (!root) throw new Error('migrations/ folder not found next to the application')
/** Where migrations/ and config/ are (the repository, or beside dist/ after a build). */
export const PROJECT_ROOT: string = root

export const MIGRATIONS = {
  host: join(root, 'migrations/host'),
  tenant: join(root, 'migrations/tenant'),
} as const

export type MigrationSet = keyof typeof MIGRATIONS

interface Journal {
  entries: { idx: number; tag: string }[]
}

export interface MigrationInfo {
  /** Tag of the newest migration, e.g. "0003_add_invoices": what a current database reports. */
  version: string
  /** All tags in order. */
  tags: string[]
  /** Hash of every migration's SQL: names the tenant template, so an edited migration rebuilds it. */
  hash: string
}

export function migrationInfo(set: MigrationSet, folder: string = MIGRATIONS[set]): MigrationInfo {
  const journal = JSON.parse(readFileSync(join(folder, 'meta/_journal.json'), 'utf8')) as Journal
  const tags = journal.entries.sort((a, b) => a.idx - b.idx).map((e) => e.tag)
  const h = createHash('sha256')
  for (const tag of tags) h.update(tag).update(readFileSync(join(folder, `${tag}.sql`)))
  const version = tags.at(-1)
  if (!version) throw new Error(`no migrations in ${folder}`)
  return { version, tags, hash: h.digest('hex').slice(0, 12) }
}

/**
 * Apply pending migrations to one database with a short-lived connection. drizzle's migrator takes no
 * lock, so two runners (a CLI fleet migration and a queued job, two booting app instances) would both
 * apply the same migration: an advisory lock (scoped to this database) makes the second wait, then
 * find nothing pending.
 */
export async function runMigrations(url: string, folder: string): Promise<void> {
  const sql = connect(url, { max: 1, applicationName: 'tenantkit-migrate' })
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`
    await migrate(drizzle(sql), { migrationsFolder: folder })
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** Advisory lock key of migrations (any constant; advisory locks are per database). */
const MIGRATION_LOCK = 7_401_002_026

export const migrateHost = (url: string) => runMigrations(url, MIGRATIONS.host)
