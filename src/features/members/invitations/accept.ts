/**
 * Accepting an invitation: the only way into a tenant for someone who did not create it.
 *
 * The token must be usable (each reason it is not has its own code) and the person accepting must be
 * signed in with the invited address, verified (a signup through the token verifies it: the token
 * arrived at that address). Then the membership (host DB) and the tenant user (tenant DB) are created
 * in one step: the tenant transaction wraps the host one, which also marks the invitation used, so
 * two acceptances of one token, or a refused membership, leave nothing behind.
 */
import { and, eq, gt, isNull, sql } from 'drizzle-orm'
import { type Invitation, invitations, memberships, type User } from '../../../../drizzle/host/schema.js'
import type { FastifyRequest } from 'fastify'
import { isEmailVerified } from '../../../core/identity/email-verified.js'
import { emailNotVerified } from '../../../core/identity/users.js'
import type { HostDb } from '../../../core/db/host.js'
import { audit } from '../../../core/lib/audit.js'
import { AppError, conflict, forbidden, notFound, PG, pgCode } from '../../../core/lib/errors.js'
import type { Entitlements } from '../../billing/index.js'
import { requireBelowLimit } from '../../billing/index.js'
import { createMembersRepository } from '../repository.js'
import { countActiveMembersLocked } from '../seats.js'
import type { Tenancy } from '../../../core/plugins/tenancy.js'
import type { DomainEvents } from '../../../core/events/domain-events.js'
import '../events.js'
import { type InvitationByToken, invitationState } from './repository.js'

export const INVITATION_ERRORS = {
  notFound: () => notFound('INVITATION_NOT_FOUND', 'No such invitation (the link may have been replaced by a newer one)'),
  expired: () => new AppError(410, 'INVITATION_EXPIRED', 'This invitation has expired: ask for a new one'),
  revoked: () => new AppError(410, 'INVITATION_REVOKED', 'This invitation was withdrawn'),
  used: () => conflict('INVITATION_USED', 'This invitation has already been accepted'),
  wrongAccount: () =>
    forbidden('INVITATION_WRONG_ACCOUNT', 'This invitation was sent to another email address: sign in with that address to accept it'),
}

/** 404/410/409 unless the invitation can still be accepted (its tenant still exists, not used, revoked or expired). */
export function assertUsable(found: InvitationByToken | undefined): asserts found is InvitationByToken {
  if (!found || found.tenant.deleted) throw INVITATION_ERRORS.notFound()
  throwForState(found.invitation)
}

function throwForState(inv: Invitation) {
  const state = invitationState(inv)
  if (state === 'accepted') throw INVITATION_ERRORS.used()
  if (state === 'revoked') throw INVITATION_ERRORS.revoked()
  if (state === 'expired') throw INVITATION_ERRORS.expired()
}

const sameEmail = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase()

/** 403 INVITATION_WRONG_ACCOUNT for another address; 403 EMAIL_NOT_VERIFIED until the invited address is verified. */
export function assertInvitee(inv: Invitation, user: Pick<User, 'email' | 'emailVerifiedAt'>) {
  if (!sameEmail(inv.email, user.email)) throw INVITATION_ERRORS.wrongAccount()
  if (!isEmailVerified(user)) throw emailNotVerified()
}

/** Does the invitation name this address? (signup through the token: the address is the one to create). */
export const invitedAddress = (inv: Invitation, email: string) => sameEmail(inv.email, email)

export interface AcceptDeps {
  host: HostDb
  tenancy: Pick<Tenancy, 'catalog' | 'pools' | 'memberships'>
  /** The tenant's plan (fastify.entitlements.get): its `members` limit is checked as the membership is added. */
  entitlements?: (tenantId: string) => Promise<Entitlements>
  /** Where `member.joined` is published once the membership committed. */
  events?: Pick<DomainEvents, 'publish'>
}

/**
 * Create the membership and tenant user for `user`, mark the invitation used and audit
 * `invitation.accepted`, all in one host transaction. The caller has run assertUsable and
 * assertInvitee. 409 ALREADY_MEMBER when the user is already in the tenant (the invitation stays
 * open); 409 TENANT_NOT_READY while the tenant is not set up; 403 LIMIT_REACHED when the tenant has as
 * many members as its plan allows (the invitation stays open). `how.atSignup` marks an acceptance made
 * by signing up through the invitation.
 */
export async function acceptInvitation(
  deps: AcceptDeps,
  found: InvitationByToken,
  user: Pick<User, 'id' | 'email' | 'name'>,
  how: { req?: FastifyRequest; atSignup?: boolean } = {},
) {
  const { host, tenancy } = deps
  const inv = found.invitation
  const record = await tenancy.catalog.get(inv.tenantId)
  if (!record) throw INVITATION_ERRORS.notFound()
  if (record.status !== 'active' && record.status !== 'suspended') {
    throw conflict('TENANT_NOT_READY', `This tenant is not ready yet (${record.status})`)
  }
  const plan = await deps.entitlements?.(record.id)
  await tenancy.pools.withTenant(record, (tenantDb) =>
    tenantDb.transaction(async (tx) => {
      const members = createMembersRepository({ host, tenantDb, tenantId: record.id })
      await members.ensureTenantUser(tx, user, inv.localRole, true)
      await host.transaction(async (htx) => {
        const [claimed] = await htx
          .update(invitations)
          .set({ acceptedAt: sql`now()`, acceptedBy: user.id })
          .where(
            and(
              eq(invitations.id, inv.id),
              eq(invitations.tokenHash, inv.tokenHash),
              isNull(invitations.acceptedAt),
              isNull(invitations.revokedAt),
              gt(invitations.expiresAt, sql`now()`),
            ),
          )
          .returning({ id: invitations.id })
        if (!claimed) {
          // Someone got there first (accepted, revoked, renewed or it just expired): say which.
          const [now] = await htx.select().from(invitations).where(eq(invitations.id, inv.id))
          if (!now) throw INVITATION_ERRORS.notFound()
          throwForState(now)
          throw INVITATION_ERRORS.notFound() // renewed: this token is no longer the invitation's
        }
        if (plan) await requireBelowLimit(plan, 'members', () => countActiveMembersLocked(htx, record.id))
        try {
          await htx.insert(memberships).values({ userId: user.id, tenantId: record.id, role: inv.role })
        } catch (err) {
          if (pgCode(err) === PG.uniqueViolation) throw conflict('ALREADY_MEMBER', 'You are already a member of this tenant')
          throw err
        }
        await audit(
          htx,
          {
            action: 'invitation.accepted',
            actorUserId: user.id,
            tenantId: record.id,
            targetType: 'invitation',
            targetId: inv.id,
            metadata: { role: inv.role, localRole: inv.localRole, invitedBy: inv.invitedBy, ...(how.atSignup ? { atSignup: true } : {}) },
          },
          how.req,
        )
      })
    }),
  )
  await tenancy.memberships.invalidate(user.id, record.id)
  await deps.events?.publish(record.id, 'member.joined', {
    member: { userId: user.id, email: user.email, role: inv.role, localRole: inv.localRole ?? null },
  })
  return { tenant: { id: record.id, slug: record.slug, name: record.name }, role: inv.role, localRole: inv.localRole }
}
