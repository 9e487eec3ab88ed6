/**
 * `tenants.export`: an owner's POST /api/tenant/export, built off the request. One archive
 * `<EXPORT_DIR>/<export id>.tar.gz` holding
 *   database.dump      pg_dump of the tenant's database, custom format (`pg_restore --list`, `pg_restore -d …`),
 *                      made with the catalog's (decrypted) URL, passed to pg_dump in its environment, never argv;
 *                      a shared-isolation tenant's: the shared database read through its row-level security with
 *                      app.tenant_id set to the tenant, so only its rows (tables keep their tenant_id column);
 *   tenant.json        the catalog row, without its database URLs (encrypted or not) and internal columns;
 *   memberships.json   who may enter it, as what (with each member's email);
 *   subscriptions.json its Stripe subscriptions;
 *   manifest.json      what this is, when and by which pg_dump.
 * The archive is written as `.part` and renamed when complete; the row says ready, with a 24 h expiry.
 * A retry starts over; after the last attempt the row says failed (with the error).
 *
 * `tenants.purge_exports` (every hour): deletes archives expired unread (status expired) and any file under
 * EXPORT_DIR older than the expiry that no ready export owns (a crash mid-download, a hard-deleted tenant).
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { and, eq, lt, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { memberships, subscriptions, tenantExports, tenants, users } from '../../../../drizzle/host/schema.js'
import type { Config } from '../../../core/config.js'
import type { HostDatabase } from '../../../core/db/host.js'
import { errorMessage } from '../../../core/lib/error-log.js'
import { type JobContext, systemJob } from '../../../core/jobs/registry.js'
import { Uuid } from '../../../core/lib/schemas.js'
import type { Catalog } from '../../../core/tenancy/types.js'
import { writeTarGz } from './tar.js'

/** How long an archive waits for its one download. */
export const EXPORT_TTL_MS = 24 * 3600_000
export const archiveName = (exportId: string) => `${exportId}.tar.gz`

export interface TenantExportDeps {
  host: HostDatabase
  catalog: Pick<Catalog, 'get'>
  config: Pick<Config, 'exportDir'>
}

/** libpq's environment for a postgres:// URL: the password stays out of the process list. */
export function libpqEnv(url: string): Record<string, string> {
  const u = new URL(url)
  const env: Record<string, string> = {
    PGHOST: decodeURIComponent(u.hostname) || 'localhost',
    PGPORT: u.port || '5432',
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
    PGUSER: decodeURIComponent(u.username),
    PGCONNECT_TIMEOUT: '10',
  }
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password)
  const sslmode = u.searchParams.get('sslmode')
  if (sslmode) env.PGSSLMODE = sslmode
  return env
}

const run = promisify(execFile)
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`

async function hostRows(host: HostDatabase, tenantId: string) {
  const [tenant] = await host.db
    .select({
      id: tenants.id,
      slug: tenants.slug,
      name: tenants.name,
      planTier: tenants.planTier,
      status: tenants.status,
      dbName: tenants.dbName,
      compPlanKey: tenants.compPlanKey,
      compPlanExpiresAt: tenants.compPlanExpiresAt,
      stripeCustomerId: tenants.stripeCustomerId,
      migrationVersion: tenants.migrationVersion,
      createdBy: tenants.createdBy,
      createdAt: tenants.createdAt,
      updatedAt: tenants.updatedAt,
    })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
  const members = await host.db
    .select({
      userId: memberships.userId,
      email: users.email,
      name: users.name,
      role: memberships.role,
      status: memberships.status,
      createdAt: memberships.createdAt,
    })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(eq(memberships.tenantId, tenantId))
    .orderBy(memberships.createdAt)
  const subs = await host.db.select().from(subscriptions).where(eq(subscriptions.tenantId, tenantId)).orderBy(subscriptions.createdAt)
  return { tenant, members, subs }
}

export const tenantsExport = systemJob({
  payload: Type.Object({ exportId: Uuid, tenantId: Uuid }, { additionalProperties: false }),
  maxRetries: 2,
  backoff: { type: 'exponential', delayMs: 10_000 },
  async process(ctx: JobContext<TenantExportDeps>, { exportId, tenantId }) {
    const { host, catalog, config } = ctx.deps
    const where = and(eq(tenantExports.id, exportId), eq(tenantExports.tenantId, tenantId))
    const [row] = await host.db
      .update(tenantExports)
      .set({ status: 'running', error: null })
      .where(and(where, sql`${tenantExports.status} in ('pending', 'running', 'failed')`))
      .returning()
    if (!row) return { outcome: 'already_done' as const }
    const tenant = await catalog.get(tenantId)
    const fail = async (message: string) => {
      await host.db.update(tenantExports).set({ status: 'failed', error: message.slice(0, 2000) }).where(where)
      return { outcome: 'failed' as const, error: message }
    }
    if (!tenant) return fail('the tenant is gone')

    await mkdir(config.exportDir, { recursive: true, mode: 0o700 })
    const work = await mkdtemp(join(config.exportDir, `.${exportId}-`))
    const target = join(config.exportDir, archiveName(exportId))
    try {
      const dump = join(work, 'database.dump')
      // Custom format, uncompressed inside (the archive is gzip'd as a whole); no owners or grants: restorable anywhere.
      // A shared-isolation tenant's URL is the shared database: its data role sees this tenant's rows only once
      // app.tenant_id names it (forced row-level security), and pg_dump must then read through the policies.
      const shared = tenant.isolation === 'shared'
      // (Its migration bookkeeping, schema drizzle, is the owner's: not the data role's to read, nor the tenant's.)
      const scope = shared ? ['--enable-row-security', '--schema=public'] : []
      await run('pg_dump', ['--format=custom', '--compress=0', '--no-owner', '--no-privileges', ...scope, `--file=${dump}`], {
        env: { ...process.env, ...libpqEnv(tenant.dbUrl), ...(shared ? { PGOPTIONS: `-c app.tenant_id=${tenant.id}` } : {}) },
        maxBuffer: 16 << 20,
      }).catch((err: Error & { stderr?: string }) => {
        // stderr names the database and user at most, never the password (it is not in argv).
        throw new Error(`pg_dump failed: ${(err.stderr || err.message).trim().slice(0, 1000)}`)
      })
      const { stdout: version } = await run('pg_dump', ['--version'])
      const { tenant: tenantRow, members, subs } = await hostRows(host, tenantId)
      const files = {
        'tenant.json': json(tenantRow),
        'memberships.json': json(members),
        'subscriptions.json': json(subs),
        'manifest.json': json({
          format: 'tenantkit-export/1',
          exportId,
          tenantId,
          slug: tenant.slug,
          isolation: tenant.isolation,
          createdAt: new Date().toISOString(),
          pgDump: version.trim(),
          files: { 'database.dump': 'pg_dump --format=custom: pg_restore --list database.dump; pg_restore --no-owner -d <url> database.dump' },
        }),
      }
      for (const [name, content] of Object.entries(files)) await writeFile(join(work, name), content, { mode: 0o600 })
      const part = `${target}.part`
      await writeTarGz(part, [
        { name: 'manifest.json', path: join(work, 'manifest.json') },
        { name: 'tenant.json', path: join(work, 'tenant.json') },
        { name: 'memberships.json', path: join(work, 'memberships.json') },
        { name: 'subscriptions.json', path: join(work, 'subscriptions.json') },
        { name: 'database.dump', path: dump },
      ])
      await rename(part, target)
      const { size } = await stat(target)
      await host.db
        .update(tenantExports)
        .set({ status: 'ready', fileName: archiveName(exportId), sizeBytes: size, readyAt: new Date(), expiresAt: new Date(Date.now() + EXPORT_TTL_MS) })
        .where(where)
      return { outcome: 'ready' as const, sizeBytes: size }
    } catch (err) {
      await rm(`${target}.part`, { force: true })
      // The last attempt leaves the row failed; earlier ones let BullMQ retry.
      if (ctx.attempt > tenantsExport.maxRetries) return fail(errorMessage(err))
      throw err
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  },
})

export const tenantsPurgeExports = systemJob({
  payload: Type.Object({}, { additionalProperties: false }),
  maxRetries: 2,
  async process(ctx: JobContext<TenantExportDeps>) {
    const { host, config } = ctx.deps
    const expired = await host.db
      .update(tenantExports)
      .set({ status: 'expired', fileName: null })
      .where(and(eq(tenantExports.status, 'ready'), lt(tenantExports.expiresAt, sql`now()`)))
      .returning({ id: tenantExports.id })
    for (const { id } of expired) await rm(join(config.exportDir, archiveName(id)), { force: true })
    // Anything else older than the expiry that no ready export owns: a lost download's file, a dropped tenant's.
    const live = new Set(
      (await host.db.select({ fileName: tenantExports.fileName }).from(tenantExports).where(eq(tenantExports.status, 'ready'))).map((r) => r.fileName),
    )
    let swept = 0
    const names = await readdir(config.exportDir).catch(() => [] as string[])
    for (const name of names) {
      if (live.has(name)) continue
      const path = join(config.exportDir, name)
      const info = await stat(path).catch(() => undefined)
      if (!info || Date.now() - info.mtimeMs < EXPORT_TTL_MS) continue
      await rm(path, { recursive: true, force: true })
      swept++
    }
    return { expired: expired.length, swept }
  },
})
