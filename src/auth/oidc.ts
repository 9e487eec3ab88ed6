/**
 * The OpenID Connect side of "Sign in with Google" (or any OIDC provider): discovery, ID token
 * verification against the issuer's JWKS, the userinfo fallback, and turning claims into an identity.
 * @fastify/oauth2 does the authorization-code exchange; it does not verify ID tokens, so this does,
 * with node:crypto only (no JOSE dependency in production code).
 */
import { createPublicKey, type JsonWebKey, type KeyObject, constants as cryptoConstants, verify } from 'node:crypto'

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

// JWS algorithms we accept: asymmetric only ("none" and HMAC with a public client secret are refused).
const ALGS: Record<string, { hash: string; kty: string; pss?: true; ec?: true }> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  PS256: { hash: 'sha256', kty: 'RSA', pss: true },
  PS384: { hash: 'sha384', kty: 'RSA', pss: true },
  PS512: { hash: 'sha512', kty: 'RSA', pss: true },
  ES256: { hash: 'sha256', kty: 'EC', ec: true },
  ES384: { hash: 'sha384', kty: 'EC', ec: true },
  ES512: { hash: 'sha512', kty: 'EC', ec: true },
}

const b64json = (part: string): unknown => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))

export interface IdTokenVerifierOptions {
  metadata: OidcMetadata
  clientId: string
  /** Tolerated clock difference with the provider. */
  clockSkewS?: number
  /** A JWKS refetch for an unknown `kid` (key rotation) happens at most this often. */
  jwksMinRefreshMs?: number
  timeoutMs?: number
  now?: () => number
}

/**
 * Verify an ID token (OIDC Core §3.1.3.7): signature by a key from the issuer's JWKS, `iss`, `aud`
 * (and `azp` when several audiences), `exp`, `iat`, `nbf`. Keys are cached; an unknown `kid`
 * refetches the JWKS (rotation), rate-limited so forged kids can't make us hammer the provider.
 */
export function createIdTokenVerifier(opts: IdTokenVerifierOptions) {
  const { metadata, clientId, clockSkewS = 60, jwksMinRefreshMs = 60_000, timeoutMs = DEFAULT_TIMEOUT_MS, now = Date.now } = opts
  let keys = new Map<string, { key: KeyObject; jwk: JsonWebKey }>()
  let fetchedAt = 0
  let inflight: Promise<void> | undefined

  async function refresh(): Promise<void> {
    inflight ??= (async () => {
      try {
        const body = (await getJson(metadata.jwks_uri, timeoutMs)) as { keys?: JsonWebKey[] } | null
        if (!Array.isArray(body?.keys)) throw new OidcError('provider_unavailable', `JWKS at ${metadata.jwks_uri} has no keys`)
        const next = new Map<string, { key: KeyObject; jwk: JsonWebKey }>()
        for (const jwk of body.keys) {
          if (jwk.use && jwk.use !== 'sig') continue
          try {
            next.set(String(jwk.kid ?? ''), { key: createPublicKey({ key: jwk, format: 'jwk' }), jwk })
          } catch {
            // A key type we can't import can't have signed anything we accept; skip it.
          }
        }
        keys = next
        fetchedAt = now()
      } finally {
        inflight = undefined
      }
    })()
    return inflight
  }

  async function keyFor(kid: string): Promise<{ key: KeyObject; jwk: JsonWebKey } | undefined> {
    if (!keys.has(kid) && (fetchedAt === 0 || now() - fetchedAt >= jwksMinRefreshMs)) await refresh()
    return keys.get(kid) ?? (kid === '' && keys.size === 1 ? [...keys.values()][0] : undefined)
  }

  const invalid = (why: string) => new OidcError('invalid_id_token', `ID token rejected: ${why}`)

  return async function verifyIdToken(idToken: string): Promise<IdTokenClaims> {
    const parts = idToken.split('.')
    if (parts.length !== 3) throw invalid('not a compact JWS')
    const [h, p, s] = parts as [string, string, string]
    let header: { alg?: string; kid?: string; crit?: unknown }
    let claims: IdTokenClaims
    try {
      header = b64json(h) as typeof header
      claims = b64json(p) as IdTokenClaims
    } catch {
      throw invalid('malformed header or payload')
    }
    const alg = ALGS[header.alg ?? '']
    if (!alg) throw invalid(`algorithm ${String(header.alg)} not accepted`)
    if (header.crit !== undefined) throw invalid('unsupported critical header')
    const found = await keyFor(String(header.kid ?? ''))
    if (!found || found.jwk.kty !== alg.kty || (found.jwk.alg && found.jwk.alg !== header.alg))
      throw invalid('no matching key in the issuer JWKS')
    const ok = verify(
      alg.hash,
      Buffer.from(`${h}.${p}`),
      alg.pss
        ? { key: found.key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST }
        : alg.ec
          ? { key: found.key, dsaEncoding: 'ieee-p1363' }
          : found.key,
      Buffer.from(s, 'base64url'),
    )
    if (!ok) throw invalid('bad signature')

    const t = Math.floor(now() / 1000)
    if (claims.iss !== metadata.issuer) throw invalid(`issuer ${String(claims.iss)}`)
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    if (!aud.includes(clientId)) throw invalid('audience is not this client')
    if (aud.length > 1 && claims.azp !== clientId) throw invalid('authorized party is not this client')
    if (typeof claims.exp !== 'number' || claims.exp + clockSkewS < t) throw invalid('expired')
    if (typeof claims.iat !== 'number' || claims.iat - clockSkewS > t) throw invalid('issued in the future')
    if (typeof claims.nbf === 'number' && claims.nbf - clockSkewS > t) throw invalid('not yet valid')
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
