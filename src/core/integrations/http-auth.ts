/**
 * Credentials for the outbound HTTP client (the seed's `bearer_token_auth`, `api_key_auth`, `oauth_token_auth`).
 * An `HttpAuth` gives the headers of each attempt and, optionally, a `refresh` the client calls once per call
 * when the peer answers 401 (drop what is cached; the call is then tried once more with fresh headers).
 */
import { request } from 'undici'
import { HttpClientError, HttpError, invalidOptions } from './http-errors.js'

export interface HttpAuth {
  headers(): Record<string, string> | Promise<Record<string, string>>
  /** The peer said 401: forget cached credentials. Resolve true when a new attempt may succeed. */
  refresh?(): boolean | Promise<boolean>
}

type Secret = string | (() => string | Promise<string>)

const nonEmpty = (name: string, value: unknown) => {
  if (typeof value !== 'string' || value.length === 0) throw invalidOptions(`${name} must be a non-empty string`)
  if (/[\r\n]/.test(value)) throw invalidOptions(`${name} must not contain line breaks`)
}
const resolveSecret = async (name: string, s: Secret) => {
  const value = typeof s === 'function' ? await s() : s
  nonEmpty(name, value)
  return value
}

/** `Authorization: Bearer <token>`; the token may be a function (read from a secret store per attempt). */
export function bearerAuth(token: Secret): HttpAuth {
  if (typeof token !== 'function') nonEmpty('bearer token', token)
  return { headers: async () => ({ authorization: `Bearer ${await resolveSecret('bearer token', token)}` }) }
}

/** An API key in a header (default `x-api-key`), optionally with a prefix (`{ header: 'authorization', prefix: 'Token ' }`). */
export function apiKeyAuth(key: Secret, opts: { header?: string; prefix?: string } = {}): HttpAuth {
  const header = (opts.header ?? 'x-api-key').toLowerCase()
  if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(header)) throw invalidOptions(`"${opts.header}" is not a valid header name`)
  if (typeof key !== 'function') nonEmpty('API key', key)
  return { headers: async () => ({ [header]: `${opts.prefix ?? ''}${await resolveSecret('API key', key)}` }) }
}

export interface ClientCredentialsOptions {
  tokenUrl: string
  clientId: string
  clientSecret: string
  scope?: string | string[]
  /** Some providers (Auth0) want the API's audience. */
  audience?: string
  /** More form fields for the token request. */
  extraParams?: Record<string, string>
  /** 'basic' (RFC 6749 §2.3.1, the default): HTTP Basic with the client id and secret; 'body': both as form fields. */
  authMethod?: 'basic' | 'body'
  /** A token is renewed this long before it expires (default 30 s), so a call never leaves with one about to lapse. */
  refreshSkewMs?: number
  /** When the token endpoint gives no `expires_in` (default 300 s). */
  defaultExpiresInS?: number
  /** The token request's own timeout (default 10 s). */
  timeoutMs?: number
  /** Clock, for tests. */
  now?: () => number
}

export interface ClientCredentialsAuth extends HttpAuth {
  /** The current access token, fetched when none is cached or it is about to expire (one request at a time). */
  token(): Promise<string>
  /** Forget the cached token. */
  invalidate(): void
  /** Token requests made so far. */
  readonly fetches: number
}

/**
 * OAuth 2.0 client credentials (RFC 6749 §4.4): the token is cached until `expires_in − refreshSkewMs`,
 * concurrent calls share one token request, and a 401 from the API drops it so the call's one retry gets a new one.
 */
export function oauth2ClientCredentials(o: ClientCredentialsOptions): ClientCredentialsAuth {
  let url: URL
  try {
    url = new URL(o.tokenUrl)
  } catch {
    throw invalidOptions(`tokenUrl "${o.tokenUrl}" is not a valid URL`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalidOptions(`tokenUrl must be http(s), not ${url.protocol}`)
  nonEmpty('clientId', o.clientId)
  nonEmpty('clientSecret', o.clientSecret)
  const authMethod = o.authMethod ?? 'basic'
  if (authMethod !== 'basic' && authMethod !== 'body') throw invalidOptions(`authMethod must be 'basic' or 'body'`)
  const skew = o.refreshSkewMs ?? 30_000
  const timeoutMs = o.timeoutMs ?? 10_000
  const defaultExpiresInS = o.defaultExpiresInS ?? 300
  for (const [name, v] of [
    ['refreshSkewMs', skew],
    ['timeoutMs', timeoutMs],
    ['defaultExpiresInS', defaultExpiresInS],
  ] as const) {
    if (!Number.isFinite(v) || v < 0) throw invalidOptions(`${name} must be a number >= 0, got ${v}`)
  }
  const now = o.now ?? Date.now

  let cached: { token: string; expiresAt: number } | undefined
  let inflight: Promise<string> | undefined
  let fetches = 0

  async function fetchToken(): Promise<string> {
    fetches++
    const form = new URLSearchParams({ grant_type: 'client_credentials', ...o.extraParams })
    if (o.scope) form.set('scope', Array.isArray(o.scope) ? o.scope.join(' ') : o.scope)
    if (o.audience) form.set('audience', o.audience)
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    if (authMethod === 'basic') {
      // RFC 6749 §2.3.1: both form-urlencoded before base64.
      const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')
      headers.authorization = `Basic ${Buffer.from(`${enc(o.clientId)}:${enc(o.clientSecret)}`).toString('base64')}`
    } else {
      form.set('client_id', o.clientId)
      form.set('client_secret', o.clientSecret)
    }
    const startedAt = now()
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(url, { method: 'POST', headers, body: form.toString(), signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      throw new HttpClientError('HTTP_AUTH', `OAuth2 token request to ${url.origin}${url.pathname} failed: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const text = await res.body.text()
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {}
    const info = { method: 'POST', url: `${url.origin}${url.pathname}`, attempts: 1, status: res.statusCode, body, headers: res.headers }
    if (res.statusCode >= 400) {
      throw new HttpError('HTTP_STATUS', info, `OAuth2 token endpoint answered ${res.statusCode}`)
    }
    const t = body as { access_token?: unknown; expires_in?: unknown; token_type?: unknown }
    if (typeof body !== 'object' || body === null || typeof t.access_token !== 'string' || t.access_token.length === 0)
      throw new HttpClientError('HTTP_AUTH', 'OAuth2 token endpoint answered without an access_token')
    if (typeof t.token_type === 'string' && t.token_type.toLowerCase() !== 'bearer')
      throw new HttpClientError('HTTP_AUTH', `OAuth2 token type "${t.token_type}" is not supported (only bearer)`)
    const expiresIn = Number(t.expires_in ?? defaultExpiresInS)
    const lifetimeMs = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : defaultExpiresInS * 1000
    cached = { token: t.access_token, expiresAt: startedAt + lifetimeMs }
    return t.access_token
  }

  async function token(): Promise<string> {
    if (cached && now() < cached.expiresAt - skew) return cached.token
    inflight ??= fetchToken().finally(() => {
      inflight = undefined
    })
    return inflight
  }

  return {
    token,
    invalidate() {
      cached = undefined
    },
    get fetches() {
      return fetches
    },
    headers: async () => ({ authorization: `Bearer ${await token()}` }),
    refresh() {
      cached = undefined
      return true
    },
  }
}
