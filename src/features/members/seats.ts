/**
 * What a plan's `members` limit counts. Inviting counts the active members and the open invitations
 * (each may become a member); accepting counts the active members only, under a lock on the tenant row
 * so two acceptances at once cannot both take the last seat.
 */
import { and, eq, gt, isNull, sql } from 'drizzle-orm'
import { invitations, memberships, tenants } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'

type Db = Pick<HostDb, 'select'>

export async function countActiveMembers(db: Db, tenantId: string): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(memberships)
    .where(and(eq(memberships.tenantId, tenantId), eq(memberships.status, 'active')))
  return row!.n
}

/** Active members plus open invitations (not accepted, revoked or expired). */
export async function countSeatsTaken(db: Db, tenantId: string): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(invitations)
    .where(and(eq(invitations.tenantId, tenantId), isNull(invitations.acceptedAt), isNull(invitations.revokedAt), gt(invitations.expiresAt, sql`now()`)))
  return (await countActiveMembers(db, tenantId)) + row!.n
}

/** Active members, counted while holding the tenant row (in the transaction that adds the membership). */
export async function countActiveMembersLocked(tx: Db, tenantId: string): Promise<number> {
  await tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).for('update')
  return countActiveMembers(tx, tenantId)
}
