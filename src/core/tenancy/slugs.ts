/** Slug rules shared by provisioning and the routes. */
import { randomBytes } from 'node:crypto'
import { sql } from 'drizzle-orm'
import type { HostDb } from '../db/host.js'
import { conflict } from '../lib/errors.js'

/**
 * A personal tenant's slug from an email: "ada.lovelace@x.com" → "ada-lovelace-3f9a". `suffixBytes`
 * random bytes (hex) keep common local parts ("info", "john") apart; callers retry a taken slug with
 * more of them. The base is at most 40 characters, so up to 11 bytes fit the 63-character limit.
 */
export function personalTenantSlug(email: string, suffixBytes = 2, random: (n: number) => Buffer = randomBytes): string {
  const base = (email.split('@')[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
  return `${base.length >= 2 ? base : 'team'}-${random(suffixBytes).toString('hex')}`
}

/**
 * Inside a host transaction about to give `slug` to a tenant (a new one, or a rename): hold the slug's
 * lock until commit, and refuse it while another tenant's live alias keeps it (409 SLUG_TAKEN). The
 * unique index on core_tenants.slug covers current slugs; the lock covers a rename and a creation
 * racing for the same former slug.
 */
export async function claimSlug(tx: Pick<HostDb, 'execute'>, slug: string, tenantId: string): Promise<void> {
  // Sent together (one round trip): the connection runs them in order, so the check starts (and takes its
  // snapshot, read committed) only once the lock is held, exactly as if it had waited for the lock's answer.
  const [, held] = await Promise.all([
    tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`slug:${slug}`}, 0))`),
    tx.execute<{ tenant_id: string }>(
      sql`select tenant_id from core_tenant_slug_aliases where slug = ${slug} and expires_at > now() and tenant_id <> ${tenantId}`,
    ),
  ])
  if (held.length > 0) throw conflict('SLUG_TAKEN', `slug "${slug}" is already taken`)
}
