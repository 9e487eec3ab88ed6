/**
 * Fixture helper: make a user a member of a tenant the way the product does (an invitation, accepted:
 * src/features/members/invitations/accept.ts), without the email round trip. Tests of the invitation flow itself go
 * through HTTP and SMTP (test/api/invitations.test.ts); this is for suites that only need members.
 */
import type { FastifyInstance } from 'fastify'
import { acceptInvitation } from '../../src/features/members/invitations/accept.js'
import { createInvitationsRepository } from '../../src/features/members/invitations/repository.js'

export async function joinTenant(
  app: FastifyInstance,
  tenantId: string,
  user: { id: string; email: string; name?: string | null },
  role: 'admin' | 'member',
  localRole?: 'admin' | 'editor' | 'viewer',
) {
  const repo = createInvitationsRepository(app.host.db)
  const { token } = await repo.create({
    tenantId,
    email: user.email,
    role,
    localRole: localRole ?? (role === 'admin' ? 'admin' : 'viewer'),
    invitedBy: null,
  })
  const found = await repo.findByToken(token)
  return acceptInvitation({ host: app.host.db, tenancy: app.tenancy, events: app.services.events }, found!, { id: user.id, email: user.email, name: user.name ?? null })
}

/** Mark an address verified, as the verification flow would (the session snapshot catches up by itself: checks read the DB). */
export async function markVerified(app: FastifyInstance, userId: string) {
  await app.host.sql`update core_users set email_verified_at = now() where id = ${userId}`
}
