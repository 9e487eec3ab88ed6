/**
 * Invitations in the host DB (core_invitations): create, list, revoke, renew the token, and find one by
 * its token. A token is single use, stored only as its SHA-256 (src/core/lib/tokens.ts), and valid for
 * INVITATION_TTL_DAYS; a resend mints a new token and a new expiry (the old link stops working).
 *
 * What an address has (an account or not) never changes what `create` does or answers: it looks at
 * this tenant's own members and invitations only.
 */
import { and, desc, eq, isNull, lt, sql } from 'drizzle-orm'
import { type Invitation, type InvitationRole, invitations, memberships, tenants, users } from '../../../../drizzle/host/schema.js'
import type { TenantRole } from '../../../../drizzle/tenant/schema.js'
import type { HostDb } from '../../../core/db/host.js'
import { conflict, PG, pgCode } from '../../../core/lib/errors.js'
import { generateToken, hashToken, isTokenShaped } from '../../../core/lib/tokens.js'

export const INVITATION_TTL_DAYS = 7
export const INVITATION_TOKEN_PREFIX = 'inv'

export type InvitationState = 'pending' | 'expired' | 'accepted' | 'revoked'

export const invitationState = (inv: Pick<Invitation, 'acceptedAt' | 'revokedAt' | 'expiresAt'>, now = Date.now()): InvitationState =>
  inv.acceptedAt ? 'accepted' : inv.revokedAt ? 'revoked' : inv.expiresAt.getTime() <= now ? 'expired' : 'pending'

/** What lists and the creating admin see: never the token nor its hash. */
export interface InvitationView {
  id: string
  email: string
  role: InvitationRole
  localRole: TenantRole
  state: InvitationState
  invitedBy: string | null
  expiresAt: string
  sentAt: string
  createdAt: string
}

export const toInvitationView = (inv: Invitation): InvitationView => ({
  id: inv.id,
  email: inv.email,
  role: inv.role,
  localRole: inv.localRole,
  state: invitationState(inv),
  invitedBy: inv.invitedBy,
  expiresAt: inv.expiresAt.toISOString(),
  sentAt: inv.sentAt.toISOString(),
  createdAt: inv.createdAt.toISOString(),
})

/** An invitation found by its token, with what its public page shows. */
export interface InvitationByToken {
  invitation: Invitation
  tenant: { id: string; slug: string; name: string; status: string; deleted: boolean }
  inviterName: string | null
}

const expiry = sql`now() + make_interval(days => ${INVITATION_TTL_DAYS})`
const pending = and(isNull(invitations.acceptedAt), isNull(invitations.revokedAt))

export function createInvitationsRepository(db: HostDb) {
  return {
    /**
     * A new pending invitation and its token (for the email only). 409 ALREADY_MEMBER when an active
     * member of the tenant has this address; 409 INVITATION_PENDING when one is already pending for it
     * (resend or revoke that one).
     */
    async create(values: { tenantId: string; email: string; role: InvitationRole; localRole: TenantRole; invitedBy: string | null }) {
      const email = values.email.trim()
      const [member] = await db
        .select({ one: sql`1` })
        .from(memberships)
        .innerJoin(users, eq(users.id, memberships.userId))
        .where(and(eq(memberships.tenantId, values.tenantId), eq(sql`lower(${users.email})`, email.toLowerCase())))
        .limit(1)
      if (member) throw conflict('ALREADY_MEMBER', 'Someone with this email is already a member of the tenant')
      const { token, hash } = generateToken(INVITATION_TOKEN_PREFIX)
      try {
        const [row] = await db
          .insert(invitations)
          .values({ ...values, email, tokenHash: hash, expiresAt: expiry })
          .returning()
        return { invitation: row!, token }
      } catch (err) {
        if (pgCode(err) === PG.uniqueViolation) {
          throw conflict('INVITATION_PENDING', 'An invitation to this email is already pending: resend it, or revoke it first')
        }
        throw err
      }
    },

    /** The tenant's open invitations (pending or expired, not accepted or revoked), newest first, `limit` at a time before `cursor`. */
    async listOpen(tenantId: string, { limit, cursor }: { limit: number; cursor?: string | undefined }) {
      const rows = await db
        .select()
        .from(invitations)
        .where(and(eq(invitations.tenantId, tenantId), pending, cursor ? lt(invitations.id, cursor) : undefined))
        .orderBy(desc(invitations.id))
        .limit(limit + 1)
      const page = rows.slice(0, limit)
      return { items: page.map(toInvitationView), nextCursor: rows.length > limit ? page.at(-1)!.id : null }
    },

    async find(tenantId: string, id: string): Promise<Invitation | undefined> {
      const [row] = await db
        .select()
        .from(invitations)
        .where(and(eq(invitations.id, id), eq(invitations.tenantId, tenantId)))
      return row
    },

    /** Revoke an open invitation; undefined when it is not open (accepted, already revoked, or none). */
    async revoke(tenantId: string, id: string, by: string): Promise<Invitation | undefined> {
      const [row] = await db
        .update(invitations)
        .set({ revokedAt: sql`now()`, revokedBy: by })
        .where(and(eq(invitations.id, id), eq(invitations.tenantId, tenantId), pending))
        .returning()
      return row
    },

    /** A new token and a fresh expiry for an open invitation (the old token stops working); undefined when it is not open. */
    async renew(tenantId: string, id: string) {
      const { token, hash } = generateToken(INVITATION_TOKEN_PREFIX)
      const [row] = await db
        .update(invitations)
        .set({ tokenHash: hash, expiresAt: expiry, sentAt: sql`now()` })
        .where(and(eq(invitations.id, id), eq(invitations.tenantId, tenantId), pending))
        .returning()
      return row && { invitation: row, token }
    },

    /** The invitation a token names (any state), with its tenant and inviter; undefined for an unknown or malformed token. */
    async findByToken(token: string): Promise<InvitationByToken | undefined> {
      if (!isTokenShaped(token, INVITATION_TOKEN_PREFIX)) return undefined
      const [row] = await db
        .select({
          invitation: invitations,
          tenant: { id: tenants.id, slug: tenants.slug, name: tenants.name, status: tenants.status, deletedAt: tenants.deletedAt },
          inviterName: sql<string | null>`coalesce(${users.name}, ${users.email})`,
        })
        .from(invitations)
        .innerJoin(tenants, eq(tenants.id, invitations.tenantId))
        .leftJoin(users, eq(users.id, invitations.invitedBy))
        .where(eq(invitations.tokenHash, hashToken(token)))
      if (!row) return undefined
      const { deletedAt, ...tenant } = row.tenant
      return {
        invitation: row.invitation,
        tenant: { ...tenant, deleted: deletedAt !== null || tenant.status === 'deleted' },
        inviterName: row.inviterName,
      }
    },
  }
}

export type InvitationsRepository = ReturnType<typeof createInvitationsRepository>
