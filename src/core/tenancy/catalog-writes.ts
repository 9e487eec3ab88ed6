/**
 * The write side of the tenant catalog (core_tenants), used by provisioning, the lifecycle and fleet
 * migrations. Every write is followed by catalog.invalidate(id), so no process keeps serving a stale
 * entry; reads here go to the host database directly because they must see failed, provisioning and
 * soft-deleted rows, which the cached read side hides.
 */
import { eq, or, sql } from 'drizzle-orm'
import { type Tenant, tenants } from '../../../drizzle/host/schema.js'
import { type AuditSource, audit, auditInsert } from '../lib/audit.js'
import type { HostDatabase } from '../db/host.js'
import { decrypt, type KeyRing } from '../lib/crypto.js'
import { notFound } from '../lib/errors.js'
import type { Catalog } from './types.js'
import { isUuid } from '../lib/uuid.js'

export type TenantPatch = Partial<Omit<typeof tenants.$inferInsert, 'id' | 'createdAt'>>

/** Where the request that asked for a change came from (lifecycle runs write its audit entry later). */
export type AuditOrigin = AuditSource

export interface AuditEntry {
  action: string
  tenantId: string
  actorUserId?: string | undefined
  origin?: AuditOrigin | undefined
  metadata?: Record<string, unknown>
}

export interface CatalogWrites {
  /** The raw row by id or slug, whatever its status (soft-deleted included). */
  find(idOrSlug: string): Promise<Tenant | undefined>
  /** find, or 404 TENANT_NOT_FOUND. */
  get(idOrSlug: string): Promise<Tenant>
  /**
   * With `entry`, its audit row is written in the same transaction, both statements and begin/commit sent
   * together on one connection (one round trip): a lifecycle run's last write and its audit entry.
   * `whileInvalidating` runs once the update committed, beside the invalidation (the run's lock release).
   */
  update(id: string, patch: TenantPatch, entry?: AuditEntry, opts?: { whileInvalidating?: () => Promise<void> }): Promise<void>
  /**
   * 'provisioning' → 'failed' with the step and error; a no-op (false) unless the tenant is still
   * provisioning, so a repeated mark never undoes a run that has finished it since. With `timeoutMs`
   * the statement is cancelled when it has not finished by then: a write left queued in a reconnecting
   * pool must not land minutes later, after the caller gave up and said so.
   */
  markFailed(id: string, failure: { provisionStep: string | undefined; provisionError: string }, timeoutMs?: number): Promise<boolean>
  remove(id: string): Promise<void>
  audit(entry: AuditEntry): Promise<void>
  /** The row's decrypted database URL. */
  dbUrl(row: Pick<Tenant, 'dbUrlEncrypted'>): string
}

export function createCatalogWrites(deps: { host: HostDatabase; catalog: Catalog; keys: readonly KeyRing[] }): CatalogWrites {
  const { host, catalog, keys } = deps

  // Prepared (every lifecycle run reads its row under the lock with one): drizzle sends ad-hoc queries unprepared.
  const byIdOrSlug = host.db
    .select()
    .from(tenants)
    .where(or(eq(tenants.id, sql.placeholder('id')), eq(tenants.slug, sql.placeholder('slug'))))
    .limit(1)
    .prepare('tk_writes_tenant_by_id_or_slug')
  const bySlug = host.db.select().from(tenants).where(eq(tenants.slug, sql.placeholder('slug'))).limit(1).prepare('tk_writes_tenant_by_slug')

  async function find(idOrSlug: string): Promise<Tenant | undefined> {
    const [row] = isUuid(idOrSlug) ? await byIdOrSlug.execute({ id: idOrSlug, slug: idOrSlug }) : await bySlug.execute({ slug: idOrSlug })
    return row
  }

  /** The update and the audit row in one transaction, written as one batch (prepared statements, so nothing waits for a Describe). */
  async function withAudit(update: { sql: string; params: unknown[] }, { origin, ...entry }: AuditEntry): Promise<void> {
    const row = auditInsert(host.db, { ...entry, targetType: 'tenant', targetId: entry.tenantId }, origin).toSQL()
    const conn = await host.sql.reserve()
    try {
      const sent = [
        conn`begin`,
        conn.unsafe(update.sql, update.params as never[], { prepare: true }),
        conn.unsafe(row.sql, row.params as never[], { prepare: true }),
        conn`commit`,
      ]
      const answers = await Promise.allSettled(sent)
      const failed = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected')
      if (failed) {
        await conn`rollback`.catch(() => {}) // when commit itself failed, the transaction may still be open
        throw failed.reason
      }
      if ((answers.at(-1) as PromiseFulfilledResult<{ command?: string }>).value.command !== 'COMMIT') throw new Error('the catalog update rolled back')
    } finally {
      conn.release()
    }
  }

  return {
    find,
    async get(idOrSlug) {
      const row = await find(idOrSlug)
      if (!row) throw notFound('TENANT_NOT_FOUND', `no tenant "${idOrSlug}"`)
      return row
    },
    async update(id, patch, entry, opts) {
      const update = host.db
        .update(tenants)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(tenants.id, id))
      if (entry) await withAudit(update.toSQL(), entry)
      // Prepared (postgres.js keeps one statement per patch shape and connection): drizzle's ad-hoc
      // statements go unprepared, which costs a Describe round trip before each.
      else await update.prepare('tk_writes_update_tenant').execute()
      await Promise.all([catalog.invalidate(id), opts?.whileInvalidating?.()])
    },
    async markFailed(id, failure, timeoutMs) {
      // Raw postgres.js, not drizzle: only its query object can be cancelled.
      const query = host.sql<{ id: string }[]>`
        update core_tenants set status = 'failed', provision_step = ${failure.provisionStep ?? null},
          provision_error = ${failure.provisionError}, updated_at = now()
        where id = ${id} and status = 'provisioning' returning id`
      let timer: NodeJS.Timeout | undefined
      const expired = new Promise<never>((_, reject) => {
        if (timeoutMs === undefined) return
        timer = setTimeout(() => {
          // Unsent: dropped from the queue (and never sent). Sent: a cancel request, which may fail too.
          // (typed void, but it returns the cancel request's promise)
          Promise.resolve(query.cancel() as unknown).catch(() => {})
          reject(new Error(`marking tenant ${id} failed did not finish within ${timeoutMs} ms`))
        }, timeoutMs)
      })
      try {
        const changed = await Promise.race([query, expired])
        await catalog.invalidate(id)
        return changed.length > 0
      } finally {
        clearTimeout(timer)
      }
    },
    async remove(id) {
      await host.db.delete(tenants).where(eq(tenants.id, id))
      await catalog.invalidate(id)
    },
    audit: ({ origin, ...entry }) => audit(host.db, { ...entry, targetType: 'tenant', targetId: entry.tenantId }, origin),
    dbUrl: (row) => decrypt(row.dbUrlEncrypted, keys),
  }
}
