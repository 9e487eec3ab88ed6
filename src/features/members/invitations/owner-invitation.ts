/**
 * An owner invitation: a platform admin provisions a tenant for someone with no account yet
 * (POST /admin/api/tenants with an unknown ownerEmail). The tenant is created without an owner and the
 * address is invited with the membership role 'owner' (tenant-local admin); accepting it (signed in with
 * that address, verified, or signing up through the link) makes them the owner, like any invitation.
 * Only the admin API makes one: tenant admins invite admins and members, and ownership inside a tenant is
 * otherwise only ever offered to an admin (ownership offers).
 */
import type { Config } from '../../../core/config.js'
import type { HostDb } from '../../../core/db/host.js'
import { sealVariables } from '../../../core/email/sealed.js'
import { invitationEmail } from '../../../core/email/senders.js'
import type { JobSubmitter } from '../../../core/jobs/registry.js'
import { audit } from '../../../core/lib/audit.js'
import { createInvitationsRepository, INVITATION_TTL_DAYS } from './repository.js'

export interface OwnerInvitationDeps {
  host: HostDb
  tasks: Pick<JobSubmitter, 'submit'>
  config: Pick<Config, 'appBaseUrl' | 'encryptionKeys'>
}

export async function inviteOwner(
  deps: OwnerInvitationDeps,
  input: { tenantId: string; tenantName: string; email: string; invitedBy: string; inviterName: string },
  /** The admin's request (ip, user agent, platform API key), for the audit entry. */
  from?: Parameters<typeof audit>[2],
) {
  const repo = createInvitationsRepository(deps.host)
  const { invitation, token } = await repo.create({ tenantId: input.tenantId, email: input.email, role: 'owner', localRole: 'admin', invitedBy: input.invitedBy })
  const message = invitationEmail({
    to: invitation.email,
    inviterName: input.inviterName,
    tenantName: input.tenantName,
    invitationUrl: `${deps.config.appBaseUrl}/invitations/${token}`,
    expiresIn: `${INVITATION_TTL_DAYS} days`,
  })
  try {
    // The link is the token: sealed, so the job's record and Redis never hold it in clear.
    await deps.tasks.submit('email.send', sealVariables(message, ['invitation_url'], deps.config.encryptionKeys))
  } catch (err) {
    // No email, no invitation (the queue refusing is a 503 from the job layer).
    await repo.revoke(input.tenantId, invitation.id, input.invitedBy)
    throw err
  }
  await audit(
    deps.host,
    {
      action: 'invitation.created',
      actorUserId: input.invitedBy,
      tenantId: input.tenantId,
      targetType: 'invitation',
      targetId: invitation.id,
      metadata: { email: invitation.email, role: 'owner', localRole: 'admin' },
    },
    from,
  )
  return { id: invitation.id, email: invitation.email, expiresAt: invitation.expiresAt }
}
