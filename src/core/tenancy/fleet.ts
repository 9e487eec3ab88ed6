/**
 * Fleet migrations: bring every tenant database to the current tenant migration version.
 * The catalog records each tenant's version and status, so "who is behind" is one query and a tenant
 * already current is skipped without opening a connection to it (django-tenants spends minutes
 * connecting to 900 up-to-date tenants). Bounded concurrency; stop at the first failure or carry on.
 */
import { and, asc, inArray, isNull, ne, or, sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import { type Tenant, tenants } from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { MIGRATIONS, type MigrationInfo, migrationInfo, runMigrations } from '../db/migrations.js'
import { errorMessage } from '../lib/error-log.js'
import { notFound } from '../lib/errors.js'
import { type CatalogWrites, createCatalogWrites } from './catalog-writes.js'
import { sharedPoolKey } from './pool-manager.js'
import { movingConflict, openMoveOf } from './moving.js'
import { DEFAULT_DB_SERVER, type ServerRegistry } from './servers.js'
import type { SharedDatabase } from './shared/shared-database.js'
import type { Catalog, PoolManager } from './types.js'

/** Tenants whose database exists and is in service; failed/provisioning ones are finished by provisioning retry. */
const MIGRATABLE = ['active', 'suspended'] as const

export interface FleetDeps {
  host: HostDatabase
  catalog: Catalog
  /** When given, a migrated tenant's pool is evicted: its prepared statements were planned on the old schema. */
  pools?: PoolManager
  config: Pick<Config, 'encryptionKeys'>
  logger: Logger
  /** The tenant migrations folder (tests use a temporary copy with extra migrations). */
  folder?: string
  /** The shared database (provisioner.shared): migrated and sharedified once per run when a shared tenant is behind. */
  shared?: SharedDatabase | undefined
  /**
   * The servers (provisioner.servers): every other server's shared database is migrated too, once per run
   * (the shared tenants behind on it, and each such database at the end of a whole-fleet run).
   */
  servers?: Pick<ServerRegistry, 'shared' | 'sharedHosts'> | undefined
}

export interface FleetOptions {
  /** Slugs to migrate; all migratable tenants when omitted. */
  tenants?: string[]
  concurrency?: number
  continueOnError?: boolean
  onProgress?: (result: TenantMigrationResult, done: number, total: number) => void
}

export type TenantMigrationOutcome = 'skipped' | 'migrated' | 'failed' | 'not_run'

export interface TenantMigrationResult {
  id: string
  slug: string
  outcome: TenantMigrationOutcome
  fromVersion: string | undefined
  version: string | undefined
  error?: string
  ms: number
}

export interface FleetSummary {
  version: string
  total: number
  migrated: number
  skipped: number
  failed: number
  notRun: number
  ms: number
  results: TenantMigrationResult[]
}

export interface BehindTenant {
  id: string
  slug: string
  status: Tenant['status']
  migrationVersion: string | null
  migrationStatus: Tenant['migrationStatus']
  /** Last catalog write: a migration job's id is derived from it, so a re-run queues again only after a change. */
  updatedAt: Date
}

export interface MigrateTenantDeps {
  writes: CatalogWrites
  info: MigrationInfo
  folder: string
  pools?: PoolManager | undefined
  /**
   * Given: a tenant with an open move is refused (409 MOVE_IN_PROGRESS, nothing marked): migrating the copy
   * a move reads would leave the two sides on different layouts. Migrate it once the move is done.
   */
  host?: HostDatabase | undefined
  /** Shared tenants: the shared database of the tenant's server; its version is brought current by ensure(). */
  shared?: ((server: string) => Promise<Pick<SharedDatabase, 'ensure'> | undefined>) | undefined
}

/** Migrate one tenant database and record the result in the catalog. No connection when already current. */
export async function migrateTenant(row: Tenant, deps: MigrateTenantDeps): Promise<'skipped' | 'migrated'> {
  const { writes, info, folder, pools } = deps
  if (row.migrationVersion === info.version && row.migrationStatus === 'current') return 'skipped'
  const move = deps.host && (await openMoveOf(deps.host, row.id))
  if (move) throw movingConflict(row.slug, 'migrate', move)
  await writes.update(row.id, { migrationStatus: 'running', migrationError: null })
  try {
    if (row.isolation === 'shared') {
      const shared = await deps.shared?.(row.server)
      if (!shared) throw new Error(`tenant is in a shared database on server "${row.server}", but that server has none configured (SHARED_DATABASE_URL, servers add --shared-url)`)
      await shared.ensure()
    } else {
      await runMigrations(writes.dbUrl(row), folder)
    }
  } catch (err) {
    await writes.update(row.id, { migrationStatus: 'failed', migrationError: errorMessage(err) })
    throw err
  }
  await writes.update(row.id, { migrationStatus: 'current', migrationVersion: info.version, migratedAt: new Date(), migrationError: null })
  await pools?.evict(row.id)
  return 'migrated'
}

/** Who is behind the current tenant migrations (or failed, or interrupted): one query. */
export async function listBehind(deps: Pick<FleetDeps, 'host' | 'folder'>): Promise<BehindTenant[]> {
  const { version } = migrationInfo('tenant', deps.folder ?? MIGRATIONS.tenant)
  return deps.host.db
    .select({
      id: tenants.id,
      slug: tenants.slug,
      status: tenants.status,
      migrationVersion: tenants.migrationVersion,
      migrationStatus: tenants.migrationStatus,
      updatedAt: tenants.updatedAt,
    })
    .from(tenants)
    .where(
      and(
        isNull(tenants.deletedAt),
        inArray(tenants.status, [...MIGRATABLE]),
        or(sql`${tenants.migrationVersion} is distinct from ${version}`, ne(tenants.migrationStatus, 'current')),
      ),
    )
    .orderBy(asc(tenants.slug))
}

export async function migrateFleet(deps: FleetDeps, opts: FleetOptions = {}): Promise<FleetSummary> {
  const started = performance.now()
  const folder = deps.folder ?? MIGRATIONS.tenant
  const info = migrationInfo('tenant', folder)
  const writes = createCatalogWrites({ host: deps.host, catalog: deps.catalog, keys: deps.config.encryptionKeys })
  const concurrency = Math.max(1, opts.concurrency ?? 4)

  const rows = opts.tenants?.length
    ? await deps.host.db
        .select()
        .from(tenants)
        .where(and(isNull(tenants.deletedAt), inArray(tenants.slug, opts.tenants)))
        .orderBy(asc(tenants.slug))
    : await deps.host.db
        .select()
        .from(tenants)
        .where(and(isNull(tenants.deletedAt), inArray(tenants.status, [...MIGRATABLE])))
        .orderBy(asc(tenants.slug))
  if (opts.tenants?.length) {
    const missing = opts.tenants.filter((slug) => !rows.some((r) => r.slug === slug))
    if (missing.length) throw notFound('TENANT_NOT_FOUND', `unknown tenant(s): ${missing.join(', ')}`)
  }

  const results: TenantMigrationResult[] = rows.map((r) => ({
    id: r.id,
    slug: r.slug,
    outcome: 'not_run',
    fromVersion: r.migrationVersion ?? undefined,
    version: r.migrationVersion ?? undefined,
    ms: 0,
  }))
  let next = 0
  let done = 0
  let stop = false
  // Each server's shared database is migrated (and sharedified) once per run, by the first shared tenant
  // behind on it; its pool is then closed: prepared statements were planned on the old schema.
  const { shared, pools, servers } = deps
  const sharedRuns = new Map<string, Promise<void>>()
  const sharedOn = async (server: string) => (server === DEFAULT_DB_SERVER ? shared : await servers?.shared(server))
  const migrateShared = (server: string, db: SharedDatabase) => {
    let run = sharedRuns.get(server)
    if (!run) {
      run = db.migrate().then(() => pools?.evict(sharedPoolKey(db.url)))
      sharedRuns.set(server, run)
    }
    return run
  }
  const sharedOnce = async (server: string) => {
    const db = await sharedOn(server)
    return db && { ensure: () => migrateShared(server, db) }
  }

  async function one(i: number): Promise<void> {
    const row = rows[i]!
    const result = results[i]!
    const t0 = performance.now()
    try {
      if (!(MIGRATABLE as readonly string[]).includes(row.status)) {
        throw new Error(`tenant is ${row.status}; finish it with provisioning retry instead`)
      }
      result.outcome = await migrateTenant(row, { writes, info, folder, pools: deps.pools, shared: sharedOnce, host: deps.host })
      result.version = info.version
    } catch (err) {
      result.outcome = 'failed'
      result.error = errorMessage(err)
      deps.logger.error({ tenant: row.slug, err: result.error }, 'tenant migration failed')
      if (!opts.continueOnError) stop = true
    }
    result.ms = Math.round(performance.now() - t0)
    done++
    opts.onProgress?.(result, done, rows.length)
  }

  const worker = async () => {
    while (!stop && next < rows.length) await one(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, rows.length) }, worker))
  // A whole-fleet run leaves no shared database behind, tenants or not (an empty one takes moves and new tenants).
  if (!opts.tenants?.length && !stop) {
    const hosts = [...(shared ? [DEFAULT_DB_SERVER] : []), ...((await servers?.sharedHosts()) ?? []).map((s) => s.name).filter((n) => n !== DEFAULT_DB_SERVER)]
    for (const server of hosts) {
      const db = await sharedOn(server)
      if (db) await migrateShared(server, db)
    }
  }

  const count = (o: TenantMigrationOutcome) => results.filter((r) => r.outcome === o).length
  const summary: FleetSummary = {
    version: info.version,
    total: rows.length,
    migrated: count('migrated'),
    skipped: count('skipped'),
    failed: count('failed'),
    notRun: count('not_run'),
    ms: Math.round(performance.now() - started),
    results,
  }
  deps.logger.info({ ...summary, results: undefined }, 'fleet migration finished')
  return summary
}
