/**
 * `tenants.purge_deleted`: soft-deleted tenants whose deletion is older than TENANT_RETENTION_DAYS are
 * hard-deleted through the lifecycle ('hardDeleted': billing stopped, pools evicted, database dropped,
 * catalog row deleted, audited), one at a time. The lifecycle re-checks under the tenant lock that the
 * tenant is still deleted and long enough ago (onlyIf), so one restored since it was listed is kept.
 * A tenant that fails doesn't stop the rest; the job then fails (and retries) naming them, and the
 * ones already purged are simply not listed again. Up to PURGE_LIMIT per run: DROP DATABASE forces a
 * checkpoint, so a backlog is worked off night after night rather than in one burst.
 */
import { Type } from 'typebox'
import type { Tenant } from '../../../drizzle/host/schema.js'
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { errorMessage } from '../lib/error-log.js'
import { type JobContext, systemJob } from '../jobs/registry.js'
import { retentionCutoff } from './batched-delete.js'
import type { Provisioner } from '../tenancy/provisioning.js'

export const PURGE_LIMIT = 200

export interface TenantRetentionDeps {
  host: HostDatabase
  config: Pick<Config, 'retention'>
  provisioner: Pick<Provisioner, 'run'>
}

export const NoPayload = Type.Object({}, { additionalProperties: false })

export const tenantsPurgeDeleted = systemJob({
  payload: NoPayload,
  maxRetries: 2,
  backoff: { type: 'exponential', delayMs: 60_000 },
  async process(ctx: JobContext<TenantRetentionDeps>) {
    const { host, config, provisioner } = ctx.deps
    const cutoff = await retentionCutoff(host.sql, config.retention.tenantDays)
    const due = await host.sql<{ id: string; slug: string }[]>`
      select id, slug from core_tenants
      where status = 'deleted' and deleted_at < ${cutoff}::timestamptz
      order by deleted_at limit ${PURGE_LIMIT}`
    const stillDue = (row: Tenant) => row.status === 'deleted' && row.deletedAt !== null && row.deletedAt < new Date(cutoff)
    const purged: string[] = []
    const kept: string[] = []
    const failed: { slug: string; error: string }[] = []
    for (const t of due) {
      try {
        await provisioner.run('hardDeleted', t.id, { onlyIf: stillDue })
        purged.push(t.slug)
      } catch (err) {
        const code = (err as { code?: unknown }).code
        if (code === 'PRECONDITION_FAILED') {
          kept.push(t.slug)
          continue
        }
        failed.push({ slug: t.slug, error: typeof code === 'string' ? `${code} ${errorMessage(err)}` : errorMessage(err) })
        ctx.logger.error({ err, tenantId: t.id, slug: t.slug }, 'hard-deleting a soft-deleted tenant failed')
      }
    }
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} of ${due.length} tenants could not be hard-deleted (${purged.length} were): ${failed.map((f) => `${f.slug}: ${f.error}`).join('; ')}`,
      )
    }
    return { purged, kept, more: due.length === PURGE_LIMIT }
  },
})
