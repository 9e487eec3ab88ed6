/**
 * "Sign in with Google" through @fastify/oauth2, for any OpenID Connect issuer (OAUTH_ISSUER_URL).
 * Registered only when GOOGLE_CLIENT_ID is set; otherwise `fastify.oidc` is null and the routes
 * answer 503 OAUTH_DISABLED.
 *
 * - Discovery: we fetch the issuer's discovery document ourselves, once at boot and with a timeout,
 *   and hand its endpoints to @fastify/oauth2 (`credentials.auth`). Same effect as the plugin's
 *   `discovery` option, but one fetch gives us the JWKS and userinfo URLs too, and an unreachable
 *   issuer fails the boot with a clear message instead of hanging it.
 * - PKCE S256; scope `openid email profile`.
 * - State: random, bound to the browser by a signed cookie, AND recorded in Redis for 10 minutes and
 *   consumed on use (GETDEL). The cookie stops login CSRF (a victim finishing an attacker's flow); the
 *   Redis record makes every state single-use, so a replayed callback is refused even when the
 *   replaying browser still holds the cookie. The record also carries where to go after login (`next`).
 */
import { randomBytes } from 'node:crypto'
import oauth2, { type OAuth2Namespace, type OAuth2Token } from '@fastify/oauth2'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../core/config.js'
import {
  createIdTokenVerifier,
  discoverOidc,
  fetchUserinfo,
  identityFrom,
  OidcError,
  type OidcIdentity,
  type OidcMetadata,
} from './oidc.js'
import { badRequest } from '../../core/lib/errors.js'

/** What a login attempt remembers between /login and /callback. */
export interface PendingLogin {
  /** Same-origin path to land on after login. */
  next?: string
}

export interface OidcClient {
  metadata: OidcMetadata
  /** Start a login: sets the state and PKCE cookies on `reply` and returns the provider's authorize URL. */
  authorizationUrl(req: FastifyRequest, reply: FastifyReply, pending: PendingLogin): Promise<string>
  /**
   * Finish a login: checks and consumes the state (400 OAUTH_STATE_INVALID), exchanges the code (with
   * the PKCE verifier) and clears the flow's cookies. Provider errors are thrown as they come
   * (see `providerFailure`).
   */
  exchangeCode(req: FastifyRequest, reply: FastifyReply): Promise<{ token: OAuth2Token; pending: PendingLogin }>
  /** Forget a flow the provider ended with an error: consume its state, clear its cookies. */
  abandon(req: FastifyRequest, reply: FastifyReply): Promise<void>
  /** The verified identity behind a token response: ID token checked against the JWKS, userinfo if needed. */
  identify(token: OAuth2Token): Promise<OidcIdentity>
}

declare module 'fastify' {
  interface FastifyInstance {
    oidc: OidcClient | null
  }
}

export const OAUTH_CALLBACK_PATH = '/auth/google/callback'
const STATE_TTL_S = 600

export const stateInvalid = () =>
  badRequest('OAUTH_STATE_INVALID', 'The sign-in link is invalid, expired or already used; start again from the login page')

export default fp<AppOptions>(
  async (fastify, { config }) => {
    if (!config.oauth) {
      fastify.decorate('oidc', null)
      return
    }
    const { clientId, clientSecret, issuerUrl } = config.oauth

    let metadata: OidcMetadata
    try {
      metadata = await discoverOidc(issuerUrl)
    } catch (err) {
      throw new Error(
        `OAuth is configured (GOOGLE_CLIENT_ID) but OIDC discovery failed for OAUTH_ISSUER_URL=${issuerUrl}: ${(err as Error).message}`,
        {
          cause: err,
        },
      )
    }

    // `__Host-` cookies can't be planted by a sibling subdomain or a plaintext response; browsers only
    // accept them over HTTPS, so plain names in development.
    const secure = config.session.cookieSecure
    const stateCookie = secure ? '__Host-tk-oauth-state' : 'tk-oauth-state'
    const verifierCookie = secure ? '__Host-tk-oauth-verifier' : 'tk-oauth-verifier'
    const cookieOpts = { httpOnly: true, sameSite: 'lax' as const, secure, path: '/', maxAge: STATE_TTL_S, signed: true }
    const stateKey = (state: string) => `${config.redisPrefix}:oauth:state:${state}`

    const pendingByRequest = new WeakMap<FastifyRequest, PendingLogin>()
    const consumedByRequest = new WeakMap<FastifyRequest, PendingLogin>()

    /** The callback's state if it equals the one in this browser's signed cookie. */
    function browserState(req: FastifyRequest): string | undefined {
      const state = (req.query as { state?: unknown }).state
      const raw = req.cookies[stateCookie]
      if (typeof state !== 'string' || !raw) return undefined
      const cookie = req.unsignCookie(raw)
      return cookie.valid && cookie.value === state ? state : undefined
    }

    async function consume(state: string): Promise<PendingLogin | undefined> {
      const stored = await fastify.redis.getdel(stateKey(state))
      return stored === null ? undefined : (JSON.parse(stored) as PendingLogin)
    }

    await fastify.register(oauth2, {
      name: 'oauth2Google',
      scope: ['openid', 'email', 'profile'],
      credentials: {
        client: { id: clientId, secret: clientSecret },
        auth: {
          authorizeHost: new URL(metadata.authorization_endpoint).origin,
          authorizePath: new URL(metadata.authorization_endpoint).pathname,
          tokenHost: new URL(metadata.token_endpoint).origin,
          tokenPath: new URL(metadata.token_endpoint).pathname,
        },
        // wreck's timeout: a provider that stops answering must not hold the callback open.
        http: { timeout: 10_000 },
      },
      callbackUri: `${config.appBaseUrl}${OAUTH_CALLBACK_PATH}`,
      pkce: 'S256',
      cookie: cookieOpts,
      redirectStateCookieName: stateCookie,
      verifierCookieName: verifierCookie,
      generateStateFunction: async (req: FastifyRequest) => {
        const state = randomBytes(24).toString('base64url')
        await fastify.redis.set(stateKey(state), JSON.stringify(pendingByRequest.get(req) ?? {}), 'EX', STATE_TTL_S)
        return state
      },
      checkStateFunction: async (req: FastifyRequest) => {
        const state = browserState(req)
        const pending = state && (await consume(state))
        if (!pending) throw stateInvalid()
        consumedByRequest.set(req, pending)
        return true
      },
    })

    const namespace = fastify.oauth2Google as OAuth2Namespace
    const verifyIdToken = createIdTokenVerifier({ metadata, clientId })

    fastify.decorate('oidc', {
      metadata,
      async authorizationUrl(req, reply, pending) {
        pendingByRequest.set(req, pending)
        return namespace.generateAuthorizationUri(req, reply)
      },
      async exchangeCode(req, reply) {
        const token = await namespace.getAccessTokenFromAuthorizationCodeFlow(req, reply)
        return { token, pending: consumedByRequest.get(req) ?? {} }
      },
      async abandon(req, reply) {
        const state = browserState(req)
        if (state) await consume(state)
        reply.clearCookie(stateCookie, cookieOpts)
        reply.clearCookie(verifierCookie, cookieOpts)
      },
      async identify(token) {
        const idToken = token.token.id_token
        if (typeof idToken !== 'string')
          throw new OidcError('invalid_id_token', 'the token response has no id_token (is the openid scope granted?)')
        const claims = await verifyIdToken(idToken)
        return identityFrom(claims, () => fetchUserinfo(metadata, token.token.access_token))
      },
    } satisfies OidcClient)
  },
  { name: 'oauth', dependencies: ['cookie', 'redis'] },
)

/**
 * Classify an error from the code exchange: the token endpoint refusing the code (4xx: expired,
 * reused, PKCE mismatch) vs the provider being unreachable or failing (network, timeout, 5xx).
 */
export function providerFailure(err: unknown): 'code_rejected' | 'provider_unavailable' {
  const e = err as { isBoom?: boolean; output?: { statusCode?: number }; data?: { isResponseError?: boolean } }
  const status = e?.output?.statusCode ?? 0
  return e?.isBoom && e.data?.isResponseError && status >= 400 && status < 500 ? 'code_rejected' : 'provider_unavailable'
}
