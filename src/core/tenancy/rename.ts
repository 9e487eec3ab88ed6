/**
 * Renaming a tenant: its display name, and its slug. A former slug stays an alias for SLUG_ALIAS_DAYS
 * (core_tenant_slug_aliases; the catalog resolves it), so bookmarks, subdomains and X-Tenant-ID values
 * keep working while people catch up, and no other tenant can take it meanwhile. The row, the alias
 * and the audit entry are written in one transaction; every process' catalog drops its copy after.
 */
import { and, eq, isNull } from 'drizzle-orm'
import { type Tenant, tenantSlugAliases, tenants } from '../../../drizzle/host/schema.js'
import type { HostDatabase } from '../db/host.js'
import { type AuditSource, audit } from '../lib/audit.js'
import { badRequest, conflict, notFound, PG, pgCode } from '../lib/errors.js'
import { validateSlug } from './provisioning.js'
import { claimSlug } from './slugs.js'
import type { Catalog } from './types.js'

export const SLUG_ALIAS_DAYS = 30

export interface TenantRename {
  name?: string | undefined
  slug?: string | undefined
}

export async function renameTenant(
  deps: { host: HostDatabase; catalog: Pick<Catalog, 'invalidate'> },
  tenantId: string,
  change: TenantRename,
  by: { actorUserId: string; origin?: AuditSource | undefined },
): Promise<Tenant> {
  const name = change.name?.trim()
  if (name !== undefined && (name.length < 1 || name.length > 200)) throw badRequest('INVALID_NAME', 'name must be 1-200 characters')
  const slug = change.slug === undefined ? undefined : validateSlug(change.slug)
  const row = await deps.host.db
    .transaction(async (tx) => {
      const [before] = await tx
        .select()
        .from(tenants)
        .where(and(eq(tenants.id, tenantId), isNull(tenants.deletedAt)))
        .for('update')
      if (!before) throw notFound('TENANT_NOT_FOUND', 'No such tenant')
      const newSlug = slug !== undefined && slug !== before.slug ? slug : undefined
      if (newSlug) {
        await claimSlug(tx as unknown as HostDatabase['db'], newSlug, tenantId)
        // Taking back a former slug of its own ends that alias; the slug it leaves becomes one.
        await tx.delete(tenantSlugAliases).where(eq(tenantSlugAliases.slug, newSlug))
        const expiresAt = new Date(Date.now() + SLUG_ALIAS_DAYS * 86_400_000)
        await tx
          .insert(tenantSlugAliases)
          .values({ slug: before.slug, tenantId, expiresAt })
          .onConflictDoUpdate({ target: tenantSlugAliases.slug, set: { tenantId, expiresAt } })
      }
      const [after] = await tx
        .update(tenants)
        .set({ ...(name !== undefined ? { name } : {}), ...(newSlug ? { slug: newSlug } : {}), updatedAt: new Date() })
        .where(eq(tenants.id, tenantId))
        .returning()
      await audit(
        tx,
        {
          action: 'tenant.renamed',
          actorUserId: by.actorUserId,
          tenantId,
          targetType: 'tenant',
          targetId: tenantId,
          metadata: { from: { name: before.name, slug: before.slug }, to: { name: after!.name, slug: after!.slug } },
        },
        by.origin,
      )
      return after!
    })
    .catch((err: unknown) => {
      if (pgCode(err instanceof Error ? (err.cause ?? err) : err) === PG.uniqueViolation)
        throw conflict('SLUG_TAKEN', `slug "${slug}" is already taken`)
      throw err
    })
  await deps.catalog.invalidate(tenantId)
  return row
}
