/**
 * Every user has somewhere to work: a personal tenant at signup and first
 * Google sign-in, and again at any login that finds the user with no membership at all (the tenant
 * step of their signup failed after the user row was written). The slug is the email's local part plus
 * random hex; a taken slug is retried with a longer suffix, since 16 bits collide for common local parts.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { User } from '../../../drizzle/host/schema.js'
import { AppError } from '../../core/lib/errors.js'
import type { Tenancy } from '../../core/plugins/tenancy.js'
import type { MembershipView } from '../../core/tenancy/memberships.js'
import { personalTenantSlug } from '../../core/tenancy/slugs.js'
import type { UsersRepository } from '../../core/identity/users.js'

/** Random suffix bytes per attempt: 16, then 32, then 48 bits. */
export const SLUG_SUFFIX_BYTES = [2, 4, 6] as const

export async function provisionPersonalTenant(
  tenancy: Pick<Tenancy, 'provisionPersonalTenant'>,
  user: User,
  random?: (n: number) => Buffer,
): ReturnType<Tenancy['provisionPersonalTenant']> {
  for (let attempt = 0; ; attempt++) {
    const bytes = SLUG_SUFFIX_BYTES[attempt]!
    try {
      return await tenancy.provisionPersonalTenant(user, personalTenantSlug(user.email, bytes, random))
    } catch (err) {
      const taken = err instanceof AppError && err.code === 'SLUG_TAKEN'
      if (!taken || attempt === SLUG_SUFFIX_BYTES.length - 1) throw err
    }
  }
}

/**
 * At login: the user's memberships, after giving a user who has none at all (any status, any tenant)
 * a personal tenant. Best effort: if that fails the login still succeeds without a tenant (logged),
 * and the next login tries again.
 */
export async function ensurePersonalTenant(
  deps: {
    tenancy: Pick<Tenancy, 'provisionPersonalTenant' | 'memberships'>
    users: Pick<UsersRepository, 'hasMemberships'>
    log: FastifyBaseLogger
  },
  user: User,
): Promise<{ memberships: MembershipView[]; provisioned?: Awaited<ReturnType<Tenancy['provisionPersonalTenant']>> }> {
  const { tenancy, users, log } = deps
  if (await users.hasMemberships(user.id)) return { memberships: await tenancy.memberships.listForUser(user.id) }
  try {
    const provisioned = await provisionPersonalTenant(tenancy, user)
    return { memberships: await tenancy.memberships.listForUser(user.id), provisioned }
  } catch (err) {
    log.warn({ err, userId: user.id }, 'provisioning a personal tenant at login failed; signed in without a tenant')
    return { memberships: [] }
  }
}
