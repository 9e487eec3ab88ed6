/**
 * Repairing a pre-registered account (pre-account-takeover). Anyone can sign up with an address they
 * don't own; until it is verified, whoever proves they own the address later (Google sign-in with a
 * verified email, a password reset through the mailbox) gets the account, and must not inherit what
 * the squatter built into it. What we chose:
 *
 *   - a tenant the account created and is still the ONLY member of (any status) is kept: its personal
 *     tenant, which nobody else could see;
 *   - from every other tenant (one it joined, or created and then shared) the account's membership is
 *     removed, so the squatter's co-members and their data are not the owner's; its tenant-side user
 *     row is left (it grants nothing without the membership);
 *   - every API key the account created, anywhere, is revoked for good (revoked_at; the caller's
 *     sessions_valid_after cutoff voids them at once as well);
 *   - the active owners left in each tenant the account was removed from are told by email
 *     (member_removed) and the removal is audited per tenant;
 *   - the stored active tenant is cleared when it was one of those tenants.
 */
import { and, eq, inArray, isNull, ne, sql } from 'drizzle-orm'
import type { FastifyRequest } from 'fastify'
import { apiKeys, memberships, tenants, users } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import { memberRemovedEmail } from '../../core/email/senders.js'
import type { JobSubmitter } from '../../core/jobs/registry.js'
import { audit } from '../../core/lib/audit.js'
import type { Memberships } from '../../core/tenancy/memberships.js'
import type { ApiKeys } from '../../core/identity/api-keys.js'

export interface ReclaimDeps {
  db: HostDb
  memberships: Pick<Memberships, 'invalidate'>
  apiKeys: Pick<ApiKeys, 'invalidate'>
  tasks: Pick<JobSubmitter, 'submit'>
}

export async function reclaimUnverifiedAccount(
  deps: ReclaimDeps,
  account: { id: string; email: string },
  how: 'google' | 'password_reset',
  req?: FastifyRequest,
): Promise<{ removedFrom: string[]; revokedKeys: number }> {
  const { db } = deps
  const others = sql<number>`(select count(*)::int from ${memberships} m2 where m2.tenant_id = ${memberships.tenantId} and m2.user_id <> ${account.id})`
  const rows = await db
    .select({ tenantId: memberships.tenantId, tenantName: tenants.name, createdBy: tenants.createdBy, others })
    .from(memberships)
    .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
    .where(eq(memberships.userId, account.id))
  const leave = rows.filter((r) => !(r.createdBy === account.id && r.others === 0))

  const removedFrom: string[] = []
  for (const t of leave) {
    await db.delete(memberships).where(and(eq(memberships.userId, account.id), eq(memberships.tenantId, t.tenantId)))
    await deps.memberships.invalidate(account.id, t.tenantId)
    removedFrom.push(t.tenantId)
  }
  const revoked = await db
    .update(apiKeys)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(apiKeys.createdBy, account.id), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id })
  for (const k of revoked) await deps.apiKeys.invalidate(k.id)
  if (removedFrom.length) {
    await db
      .update(users)
      .set({ activeTenantId: null })
      .where(and(eq(users.id, account.id), inArray(users.activeTenantId, removedFrom)))
  }

  const reason =
    how === 'google'
      ? `The owner of ${account.email} signed in with Google for the first time; the account had been registered with that address without proving it, so its memberships in shared workspaces were ended.`
      : `The owner of ${account.email} reset its password through that mailbox for the first time; the account had been registered with that address without proving it, so its memberships in shared workspaces were ended.`
  for (const t of leave) {
    const owners = await db
      .select({ id: users.id, email: users.email })
      .from(memberships)
      .innerJoin(users, eq(users.id, memberships.userId))
      .where(
        and(
          eq(memberships.tenantId, t.tenantId),
          eq(memberships.role, 'owner'),
          eq(memberships.status, 'active'),
          ne(users.id, account.id),
          isNull(users.deletedAt),
        ),
      )
    for (const owner of owners) {
      await deps.tasks.submit(
        'email.send',
        memberRemovedEmail({ to: owner.email, memberEmail: account.email, tenantName: t.tenantName, reason }),
      )
    }
    await audit(
      db,
      {
        action: 'member.removed',
        tenantId: t.tenantId,
        actorUserId: account.id,
        targetType: 'user',
        targetId: account.id,
        metadata: { reason: `unverified_account_reclaimed_${how}`, ownersNotified: owners.length },
      },
      req,
    )
  }
  return { removedFrom, revokedKeys: revoked.length }
}
