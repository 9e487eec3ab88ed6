/**
 * `identity.purge_expired`: credentials and offers that can no longer be used, CREDENTIAL_RETENTION_DAYS
 * after they stopped being usable (kept that long so support can still see what a user clicked):
 *   - user tokens (verify email, reset password, change email): expired or used;
 *   - API keys: expired or revoked (a key still valid is never touched, however old);
 *   - invitations: expired while pending, or revoked (accepted ones are the membership's history);
 *   - ownership offers: expired while open, or canceled.
 * Plain deletes by date, so running it twice deletes nothing more.
 */
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { type JobContext, systemJob } from '../jobs/registry.js'
import { deleteWhere, retentionCutoff } from './batched-delete.js'
import { NoPayload } from './tenant-retention.js'

export interface CredentialRetentionDeps {
  host: HostDatabase
  config: Pick<Config, 'retention'>
}

export const identityPurgeExpired = systemJob({
  payload: NoPayload,
  maxRetries: 3,
  async process(ctx: JobContext<CredentialRetentionDeps>) {
    const { sql } = ctx.deps.host
    const cutoff = await retentionCutoff(sql, ctx.deps.config.retention.credentialDays)
    const userTokens = await deleteWhere(
      sql,
      'core_user_tokens',
      sql`expires_at < ${cutoff}::timestamptz or used_at < ${cutoff}::timestamptz`,
    )
    const apiKeys = await deleteWhere(sql, 'core_api_keys', sql`expires_at < ${cutoff}::timestamptz or revoked_at < ${cutoff}::timestamptz`)
    const invitations = await deleteWhere(
      sql,
      'core_invitations',
      sql`(accepted_at is null and revoked_at is null and expires_at < ${cutoff}::timestamptz) or revoked_at < ${cutoff}::timestamptz`,
    )
    const ownershipOffers = await deleteWhere(
      sql,
      'core_ownership_offers',
      sql`(accepted_at is null and canceled_at is null and expires_at < ${cutoff}::timestamptz) or canceled_at < ${cutoff}::timestamptz`,
    )
    return { userTokens, apiKeys, invitations, ownershipOffers }
  },
})
