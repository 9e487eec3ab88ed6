/**
 * The OpenID Connect side of "Sign in with Google" (or any OIDC provider): discovery, ID token
 * verification against the issuer's JWKS, the userinfo fallback, and turning claims into an identity.
 * @fastify/oauth2 does the authorization-code exchange; it does not verify ID tokens, so this does,
 * with jose (security-critical verification uses the field's library, not hand-rolled JWS).
 */
import { createRemoteJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose'

/** Why a sign-in failed on the provider's side; sent to the login page as `?error=<reason>`. */
export type OidcFailure = 'provider_unavailable' | 'invalid_id_token' | 'invalid_userinfo'

export class OidcError extends Error {
  constructor(
    readonly reason: OidcFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'OidcError'
  }
}

/** The parts of the discovery document we use (OpenID Connect Discovery 1.0 §3). */
export interface OidcMetadata {
  issuer: string
  authorization_endpoint: string
  token_endpoint: string
  jwks_uri: string
  userinfo_endpoint?: string
}

export interface IdTokenClaims {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  azp?: string
  email?: string
  email_verified?: boolean | string
  name?: string
  [claim: string]: unknown
}

/** Who the provider says signed in. `emailVerified` is only true when the provider vouches for the address. */
export interface OidcIdentity {
  issuer: string
  subject: string
  email: string | undefined
  emailVerified: boolean
  name: string | undefined
}

const DEFAULT_TIMEOUT_MS = 10_000

async function getJson(url: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<unknown> {
  let res: Response
  try {
    res = await fetch(url, {
      headers: { accept: 'application/json', ...headers },
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    })
  } catch (err) {
    throw new OidcError('provider_unavailable', `GET ${url} failed: ${(err as Error).message}`, { cause: err })
  }
  // A 4xx on userinfo means the token was refused; anything else unexpected means the provider is unwell.
  if (res.status >= 400 && res.status < 500 && headers.authorization)
    throw new OidcError('invalid_userinfo', `GET ${url} answered ${res.status}`)
  if (!res.ok) throw new OidcError('provider_unavailable', `GET ${url} answered ${res.status}`)
  try {
    return await res.json()
  } catch (err) {
    throw new OidcError('provider_unavailable', `GET ${url} did not answer JSON`, { cause: err })
  }
}

/** The issuer's discovery document URL, as OIDC Discovery §4 builds it (path-preserving). */
export const discoveryUrl = (issuer: string) => `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`

/**
 * Fetch and check the discovery document. The `issuer` it declares must equal the configured one
 * (§4.3): otherwise a document served elsewhere could redirect us to another party's endpoints.
 */
export async function discoverOidc(issuerUrl: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<OidcMetadata> {
  const doc = (await getJson(discoveryUrl(issuerUrl), timeoutMs)) as Partial<OidcMetadata> | null
  for (const field of ['issuer', 'authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
    if (typeof doc?.[field] !== 'string') throw new OidcError('provider_unavailable', `discovery document of ${issuerUrl} has no ${field}`)
  }
  const meta = doc as OidcMetadata
  if (meta.issuer.replace(/\/$/, '') !== issuerUrl.replace(/\/$/, '')) {
    throw new OidcError('provider_unavailable', `discovery document of ${issuerUrl} declares issuer ${meta.issuer}`)
  }
  return {
    issuer: meta.issuer,
    authorization_endpoint: meta.authorization_endpoint,
    token_endpoint: meta.token_endpoint,
    jwks_uri: meta.jwks_uri,
    userinfo_endpoint: typeof meta.userinfo_endpoint === 'string' ? meta.userinfo_endpoint : undefined,
  }
}

// JWS algorithms we accept: asymmetric only ("none", and HMAC keyed with a client secret, are refused).
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']

export interface IdTokenVerifierOptions {
  metadata: OidcMetadata
  clientId: string
  /** Tolerated clock difference with the provider. */
  clockSkewS?: number
  /** A JWKS refetch for an unknown `kid` (key rotation) happens at most this often (jose's `cooldownDuration`). */
  jwksMinRefreshMs?: number
  timeoutMs?: number
  /** The clock for the token's time claims (jose's `currentDate`); the JWKS cache keeps real time. */
  now?: () => number
}

/**
 * Whether a failure while resolving the signing key is the provider's fault (JWKS unreachable, slow,
 * not 200, not JSON, malformed) rather than the token's (no key for its `kid`/`alg`). The generic
 * JOSEError is what jose throws for a non-200 or non-JSON JWKS response.
 */
const isProviderFault = (err: unknown) =>
  !(err instanceof errors.JOSEError) ||
  err instanceof errors.JWKSTimeout ||
  err instanceof errors.JWKSInvalid ||
  err.code === errors.JOSEError.code

/**
 * Verify an ID token (OIDC Core §3.1.3.7) with jose: signature by a key from the issuer's JWKS,
 * `iss`, `aud`, `exp`, `nbf`. On top of jose: `azp` when there are several audiences, `iat` not in
 * the future (jose checks that only with maxTokenAge), and a usable `sub`. The JWKS is cached; an
 * unknown `kid` refetches it (rotation), at most once per cooldown so forged kids can't make us
 * hammer the provider.
 */
export function createIdTokenVerifier(opts: IdTokenVerifierOptions) {
  const { metadata, clientId, clockSkewS = 60, jwksMinRefreshMs = 60_000, timeoutMs = DEFAULT_TIMEOUT_MS, now } = opts
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri), { timeoutDuration: timeoutMs, cooldownDuration: jwksMinRefreshMs })
  const keyFor: JWTVerifyGetKey = async (header, token) => {
    try {
      return await jwks(header, token)
    } catch (err) {
      if (isProviderFault(err))
        throw new OidcError('provider_unavailable', `JWKS at ${metadata.jwks_uri}: ${(err as Error).message}`, { cause: err })
      throw err
    }
  }
  const invalid = (why: string, cause?: unknown) => new OidcError('invalid_id_token', `ID token rejected: ${why}`, { cause })

  return async function verifyIdToken(idToken: string): Promise<IdTokenClaims> {
    const currentDate = new Date(now ? now() : Date.now())
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(idToken, keyFor, {
        issuer: metadata.issuer,
        audience: clientId,
        algorithms: ALGORITHMS,
        clockTolerance: clockSkewS,
        currentDate,
        requiredClaims: ['exp', 'iat', 'sub'],
      }))
    } catch (err) {
      if (err instanceof OidcError) throw err
      if (err instanceof errors.JOSEError) throw invalid(err.message, err)
      throw err
    }
    const claims = payload as IdTokenClaims
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    if (aud.length > 1 && claims.azp !== clientId) throw invalid('authorized party is not this client')
    if (claims.iat - clockSkewS > Math.floor(currentDate.getTime() / 1000)) throw invalid('issued in the future')
    if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > 255) throw invalid('no subject')
    return claims
  }
}

export type IdTokenVerifier = ReturnType<typeof createIdTokenVerifier>

/** The userinfo endpoint's claims (OIDC Core §5.3), for providers that keep email out of the ID token. */
export async function fetchUserinfo(
  metadata: OidcMetadata,
  accessToken: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<Record<string, unknown>> {
  if (!metadata.userinfo_endpoint) throw new OidcError('invalid_userinfo', 'the provider has no userinfo endpoint')
  const body = await getJson(metadata.userinfo_endpoint, timeoutMs, { authorization: `Bearer ${accessToken}` })
  if (typeof body !== 'object' || body === null) throw new OidcError('invalid_userinfo', 'userinfo is not an object')
  return body as Record<string, unknown>
}

// Some providers send email_verified as the string "true".
const isTrue = (v: unknown) => v === true || v === 'true'
const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : undefined)

/**
 * The identity behind a verified ID token. When the token carries no email, the userinfo endpoint is
 * asked (with the access token), and its `sub` must be the token's (§5.3.2: else it may be another user).
 */
export async function identityFrom(claims: IdTokenClaims, userinfo: () => Promise<Record<string, unknown>>): Promise<OidcIdentity> {
  let source: Record<string, unknown> = claims
  if (!str(claims.email)) {
    const info = await userinfo()
    if (info.sub !== claims.sub) throw new OidcError('invalid_userinfo', 'userinfo subject differs from the ID token subject')
    source = { ...info, name: info.name ?? claims.name }
  }
  const email = str(source.email)
  return {
    issuer: claims.iss,
    subject: claims.sub,
    email: email && email.length <= 254 ? email : undefined,
    emailVerified: Boolean(email) && isTrue(source.email_verified),
    name: str(source.name)?.slice(0, 100),
  }
}
