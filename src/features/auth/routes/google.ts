/**
 * Sign in with Google (or any OIDC issuer, see plugins/external/oauth.ts), mounted at /auth/google.
 * This route scope registers the oauth plugin itself, so app.ts needs one line and nothing outside
 * this scope sees the OAuth machinery.
 *
 *   GET /auth/google/login[?next=/path] → 302 to the provider (state + PKCE S256).
 *   GET /auth/google/callback           → 302 into the app with a fresh session, or
 *                                         302 to `${APP_BASE_URL}/login?error=<reason>`, or
 *                                         400 OAUTH_STATE_INVALID (bad, missing, expired or replayed state).
 * Without GOOGLE_CLIENT_ID both answer 503 OAUTH_DISABLED (not 404: the route exists, the server
 * just isn't configured for it, and the message says which variables to set).
 *
 * Login-page reasons: any `error` the provider sends (e.g. access_denied), email_not_verified,
 * email_missing, account_conflict (the email belongs to an account linked to another Google
 * identity), account_disabled (a platform admin disabled the account), code_rejected, invalid_id_token, invalid_userinfo, provider_unavailable.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { eq, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { type User, users as usersTable } from '../../../../drizzle/host/schema.js'
import type { AppOptions } from '../../../core/config.js'
import { OidcError, type OidcIdentity } from '../oidc.js'
import { chooseLoginTenant } from '../login-tenant.js'
import { ensurePersonalTenant } from '../personal-tenant.js'
import { reclaimUnverifiedAccount } from '../reclaim.js'
import { audit } from '../../../core/lib/audit.js'
import { AppError, badRequest, PG, pgCode, unavailable } from '../../../core/lib/errors.js'
import { errorResponses, MultilineText, Text } from '../../../core/lib/schemas.js'
import oauth, { type OidcClient, providerFailure } from '../oauth-plugin.js'

const NEXT_MAX = 512

const Redirect = (description: string) =>
  Type.Null({
    description: `${description} (empty body)`,
    headers: { location: { type: 'string', format: 'uri', description: 'where the browser goes next' } },
  })

const LoginQuery = Type.Object({
  next: Type.Optional(
    // A plain string on purpose: safeNextPath refuses control characters with its own code (INVALID_NEXT).
    Type.String({ minLength: 1, maxLength: NEXT_MAX, description: 'Same-origin path to land on after login, e.g. /projects?tab=mine' }),
  ),
})

const CallbackQuery = Type.Object({
  code: Type.Optional(Text({ minLength: 1, maxLength: 4096 })),
  state: Type.Optional(Text({ minLength: 1, maxLength: 512 })),
  error: Type.Optional(Text({ maxLength: 256, description: 'set by the provider when the user refused or the request failed' })),
  error_description: Type.Optional(MultilineText({ maxLength: 4096 })),
})

/**
 * `next` must stay on our origin: a path, not `//host` or `/\host` (browsers read both as another
 * host), with no control characters. Returns the path, or throws 400 INVALID_NEXT.
 */
export function safeNextPath(next: string, appBaseUrl: string): string {
  const base = new URL(appBaseUrl)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  const shapeOk = next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') && !/[\u0000-\u001f\u007f\\]/.test(next)
  if (!shapeOk || new URL(next, base).origin !== base.origin) {
    throw badRequest('INVALID_NEXT', 'next must be a path on this site, like /projects')
  }
  return next
}

/** A provider's `error` value as a login-page reason: OAuth error codes are snake_case words. */
const providerReason = (error: string) => (/^[a-z0-9_]{1,64}$/.test(error) ? error : 'provider_error')

type Resolution = { user: User; firstLogin?: true } | { conflict: User }

const googleAuthRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, opts) => {
  await fastify.register(oauth, { config: opts.config })
  const { users, host, tenancy } = fastify
  const { appBaseUrl } = opts.config

  const byGoogleId = host.db
    .select()
    .from(usersTable)
    .where(eq(usersTable.googleId, sql.placeholder('sub')))
    .prepare('users_by_google_id')
  const findByGoogleId = async (sub: string) => (await byGoogleId.execute({ sub }))[0]

  function oidcOr503(): OidcClient {
    if (!fastify.oidc) {
      throw unavailable(
        'OAUTH_DISABLED',
        'Sign-in with Google is not configured on this server: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET (and OAUTH_ISSUER_URL for another OIDC provider)',
      )
    }
    return fastify.oidc
  }

  const toLoginPage = (reply: FastifyReply, reason: string) => reply.redirect(`${appBaseUrl}/login?error=${encodeURIComponent(reason)}`)

  async function refuse(req: FastifyRequest, reply: FastifyReply, reason: string, actorUserId: string | null = null) {
    await audit(host.db, { action: 'auth.login_failed', actorUserId, metadata: { method: 'google', reason } }, req)
    return toLoginPage(reply, reason)
  }

  /** Back to where the user was going, else the app's home. */
  const routeUserAfterLogin = (next: string | undefined) => `${appBaseUrl}${next ?? '/'}`

  /**
   * The user with this Google subject; else the user with this
   * (provider-verified) email, now linked; else a new user (the callback then gives any user without
   * a membership a personal tenant, so a first login whose tenant failed is completed by the next one).
   */
  async function createOrGetGlobalUser(identity: OidcIdentity & { email: string }, req: FastifyRequest): Promise<Resolution> {
    const known = await findByGoogleId(identity.subject)
    if (known) return { user: known }

    const sameEmail = await users.findByEmail(identity.email)
    if (sameEmail) {
      // Already linked to another Google identity (e.g. a recycled Workspace address): don't take it over.
      if (sameEmail.googleId) return { conflict: sameEmail }
      // An unverified account may have been pre-registered by someone else with this address: its
      // password could be theirs, so linking removes it ("pre-account-takeover"), and ends every session
      // and API key obtained with it (sessions_valid_after). A verified one keeps both.
      const clearPassword = sameEmail.emailVerifiedAt === null && sameEmail.passwordHash !== null
      // This process's clock, like session.createdAt: the session signIn starts next must be on the valid side.
      const cutoff = new Date()
      let linked: User | undefined
      try {
        linked = await users.update(sameEmail.id, {
          googleId: identity.subject,
          emailVerifiedAt: sameEmail.emailVerifiedAt ?? new Date(),
          ...(clearPassword ? { passwordHash: null, sessionsValidAfter: cutoff } : {}),
        })
      } catch (err) {
        if (pgCode(err) === PG.uniqueViolation) return { conflict: sameEmail } // this subject got linked elsewhere meanwhile
        throw err
      }
      if (clearPassword) await fastify.revokeUserCredentials(sameEmail.id, cutoff)
      // Whoever registered this address unproven must not leave anything behind in it (src/features/auth/reclaim.ts).
      const reclaimed =
        sameEmail.emailVerifiedAt === null
          ? await reclaimUnverifiedAccount(
              { db: host.db, memberships: tenancy.memberships, apiKeys: fastify.apiKeys, tasks: fastify.services.tasks },
              sameEmail,
              'google',
              req,
            )
          : undefined
      await audit(
        host.db,
        {
          action: 'auth.oauth_link',
          actorUserId: sameEmail.id,
          targetType: 'user',
          targetId: sameEmail.id,
          metadata: {
            provider: 'google',
            issuer: identity.issuer,
            passwordCleared: clearPassword,
            removedFrom: reclaimed?.removedFrom ?? [],
            revokedKeys: reclaimed?.revokedKeys ?? 0,
          },
        },
        req,
      )
      // Re-read: reclaiming may have cleared the stored active tenant.
      return { user: (reclaimed ? await users.findById(sameEmail.id) : undefined) ?? linked ?? sameEmail }
    }

    let user: User
    try {
      user = await users.create({ email: identity.email, name: identity.name ?? null, googleId: identity.subject, emailVerified: true })
    } catch (err) {
      // A concurrent first login of the same person won the insert: continue with that user.
      const winner = err instanceof AppError && err.code === 'EMAIL_TAKEN' ? await findByGoogleId(identity.subject) : undefined
      if (winner) return { user: winner }
      throw err
    }
    return { user, firstLogin: true }
  }

  fastify.get(
    '/login',
    {
      config: { rateLimit: { max: 30, timeWindow: '1 minute' } },
      schema: {
        tags: ['auth'],
        summary: "Start signing in with Google: redirects to the provider's consent page",
        querystring: LoginQuery,
        response: {
          302: Redirect("Redirect to the provider's authorization endpoint with state and a PKCE challenge"),
          ...errorResponses(400, 429, 503),
        },
      },
    },
    async (req, reply) => {
      const oidc = oidcOr503()
      const next = req.query.next === undefined ? undefined : safeNextPath(req.query.next, appBaseUrl)
      return reply.redirect(await oidc.authorizationUrl(req, reply, { next }))
    },
  )

  fastify.get(
    '/callback',
    {
      config: { rateLimit: { max: 30, timeWindow: '1 minute' } },
      schema: {
        tags: ['auth'],
        summary: 'Where the provider sends the browser back: signs the user in and redirects into the app',
        querystring: CallbackQuery,
        response: {
          302: Redirect('Signed in: redirect to `next` or APP_BASE_URL/; or refused: redirect to APP_BASE_URL/login?error=<reason>'),
          ...errorResponses(400, 429, 503),
        },
      },
    },
    async (req, reply) => {
      const oidc = oidcOr503()
      const { code, error } = req.query
      if (error !== undefined) {
        await oidc.abandon(req, reply)
        return refuse(req, reply, providerReason(error))
      }
      if (code === undefined) throw badRequest('OAUTH_CALLBACK_INVALID', 'The callback needs code and state (or error) from the provider')

      let exchanged: Awaited<ReturnType<OidcClient['exchangeCode']>>
      let identity: OidcIdentity
      try {
        exchanged = await oidc.exchangeCode(req, reply)
        identity = await oidc.identify(exchanged.token)
      } catch (err) {
        if (err instanceof AppError) throw err // OAUTH_STATE_INVALID
        const reason = err instanceof OidcError ? err.reason : providerFailure(err)
        req.log.warn({ err, reason }, 'OAuth sign-in failed on the provider side')
        return refuse(req, reply, reason)
      }
      if (!identity.email) return refuse(req, reply, 'email_missing')
      if (!identity.emailVerified) return refuse(req, reply, 'email_not_verified')

      const resolved = await createOrGetGlobalUser({ ...identity, email: identity.email }, req)
      if ('conflict' in resolved) return refuse(req, reply, 'account_conflict', resolved.conflict.id)

      const { user } = resolved
      if (user.disabledAt) return refuse(req, reply, 'account_disabled', user.id)
      const { memberships, provisioned } = await ensurePersonalTenant({ tenancy, users, log: req.log }, user)
      if (resolved.firstLogin)
        await audit(
          host.db,
          { action: 'auth.signup', actorUserId: user.id, tenantId: provisioned?.id ?? null, metadata: { method: 'google' } },
          req,
        )
      const activeTenantId = provisioned?.id ?? (await chooseLoginTenant(host.db, user, memberships))
      await req.signIn(user, activeTenantId)
      await users.touchLogin(user.id)
      await audit(
        host.db,
        {
          action: 'auth.login',
          actorUserId: user.id,
          tenantId: activeTenantId ?? null,
          metadata: { method: 'google', firstLogin: resolved.firstLogin === true },
        },
        req,
      )
      return reply.redirect(routeUserAfterLogin(exchanged.pending.next))
    },
  )
}

export default googleAuthRoutes
