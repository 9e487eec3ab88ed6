/**
 * The outbound HTTP client (src/core/integrations/http-client.ts) against real HTTP servers started here:
 * retries with backoff and Retry-After, idempotency, timeouts, auth (bearer, API key, OAuth2 client
 * credentials with its token cache and 401 refresh), JSON helpers, logging with the caller's context, bad options.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { apiKeyAuth, bearerAuth, oauth2ClientCredentials } from '../../src/core/integrations/http-auth.js'
import { backoffMs, createHttpClient, type HttpClient, retryAfterMs } from '../../src/core/integrations/http-client.js'
import { HttpClientError, HttpError, HttpNetworkError, HttpTimeoutError } from '../../src/core/integrations/http-errors.js'
import { type Peer, sendJson, startPeer } from './peer.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})
async function peer(handler: Parameters<typeof startPeer>[0]): Promise<Peer> {
  const p = await startPeer(handler)
  cleanups.push(() => p.close())
  return p
}
function client(opts: Parameters<typeof createHttpClient>[0]): HttpClient {
  const c = createHttpClient(opts)
  cleanups.push(() => c.close())
  return c
}
// Quick backoff for the tests; the waits themselves are asserted in 'backoff' below.
const FAST = { baseDelayMs: 10, maxDelayMs: 2_000 }

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected the call to fail')
}

function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l))
      cb()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), lines }
}

describe('JSON helpers', () => {
  it('getJson and postJson send and parse JSON with a typed result; query values are encoded', async () => {
    const p = await peer((req, res, body) => {
      if (req.method === 'GET') return sendJson(res, 200, { id: 7, url: req.url })
      sendJson(res, 201, { echoed: JSON.parse(body) })
    })
    const c = client({ baseUrl: `${p.url}/api/v1/` })
    const got = await c.getJson<{ id: number; url: string }>('/things/7', { query: { q: 'a b&c', tag: ['x', 'y'], skip: undefined } })
    expect(got.id).toBe(7)
    expect(got.url).toBe('/api/v1/things/7?q=a+b%26c&tag=x&tag=y')
    const posted = await c.postJson<{ echoed: { name: string } }>('things', { name: 'é' })
    expect(posted.echoed.name).toBe('é')
    expect(p.hits[1]!.headers['content-type']).toBe('application/json')
    expect(p.hits[1]!.headers.accept).toBe('application/json')
  })

  it('a status >= 400 is an HttpError with the status and the parsed body; a non-JSON body is HTTP_INVALID_JSON', async () => {
    const p = await peer((req, res) => {
      if (req.url === '/missing') return sendJson(res, 404, { error: 'no such thing' })
      if (req.url === '/html') {
        res.writeHead(200, { 'content-type': 'text/html' })
        return res.end('<html>oops</html>')
      }
      res.writeHead(204)
      res.end()
    })
    const c = client({ baseUrl: p.url })
    const err = (await failure(c.getJson('/missing'))) as HttpError
    expect(err).toBeInstanceOf(HttpError)
    expect(err.code).toBe('HTTP_STATUS')
    expect(err.status).toBe(404)
    expect(err.body).toEqual({ error: 'no such thing' })
    expect(err.message).toBe(`GET ${p.url}/missing answered 404`)
    expect(p.hits).toHaveLength(1) // 404 is not retried

    const bad = (await failure(c.getJson('/html'))) as HttpError
    expect(bad.code).toBe('HTTP_INVALID_JSON')
    expect(bad.status).toBe(200)
    expect(bad.body).toBe('<html>oops</html>')

    expect(await c.deleteJson('/gone')).toBeUndefined()
    const raw = await c.request('GET', '/missing', { throwHttpErrors: false })
    expect(raw.status).toBe(404)
  })

  it('a response body over maxResponseBytes is refused', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, { big: 'x'.repeat(5000) }))
    const c = client({ baseUrl: p.url, maxResponseBytes: 1000 })
    const err = (await failure(c.getJson('/'))) as HttpClientError
    expect(err.code).toBe('HTTP_BODY_TOO_LARGE')
  })
})

describe('retries', () => {
  it('retries 5xx and 429 with backoff until an answer succeeds', async () => {
    const p = await peer((_req, res, _b, n) => (n < 3 ? sendJson(res, n === 1 ? 503 : 429, { n }) : sendJson(res, 200, { ok: true })))
    const c = client({ baseUrl: p.url, retry: FAST })
    const res = await c.get('/')
    expect(res.status).toBe(200)
    expect(res.attempts).toBe(3)
    expect(p.hits).toHaveLength(3)
  })

  it('stops at maxRetries with the last answer', async () => {
    const p = await peer((_req, res) => sendJson(res, 500, { error: 'boom' }))
    const c = client({ baseUrl: p.url, retry: { ...FAST, maxRetries: 2 } })
    const err = (await failure(c.getJson('/'))) as HttpError
    expect(err.status).toBe(500)
    expect(err.attempts).toBe(3)
    expect(err.body).toEqual({ error: 'boom' })
    expect(p.hits).toHaveLength(3)
    // 501 Not Implemented: a retry can't help
    const q = await peer((_req, res) => sendJson(res, 501, {}))
    expect(((await failure(client({ baseUrl: q.url, retry: FAST }).get('/'))) as HttpError).attempts).toBe(1)
  })

  it('honours Retry-After in seconds', async () => {
    const p = await peer((_req, res, _b, n) => (n === 1 ? sendJson(res, 429, {}, { 'retry-after': '1' }) : sendJson(res, 200, {})))
    const c = client({ baseUrl: p.url, retry: FAST })
    await c.get('/')
    expect(p.hits[1]!.at - p.hits[0]!.at).toBeGreaterThanOrEqual(950)
  })

  it('honours Retry-After as an HTTP date', async () => {
    // HTTP dates have whole seconds: 2 s ahead is at least 1 s away
    const p = await peer((_req, res, _b, n) =>
      n === 1 ? sendJson(res, 503, {}, { 'retry-after': new Date(Date.now() + 2000).toUTCString() }) : sendJson(res, 200, {}),
    )
    const c = client({ baseUrl: p.url, retry: { ...FAST, maxDelayMs: 5_000 } })
    await c.get('/')
    expect(p.hits[1]!.at - p.hits[0]!.at).toBeGreaterThanOrEqual(950)
  })

  it('a Retry-After past maxDelayMs ends the call at once with that answer', async () => {
    const p = await peer((_req, res) => sendJson(res, 429, { slow: 'down' }, { 'retry-after': '3600' }))
    const c = client({ baseUrl: p.url, retry: FAST })
    const started = Date.now()
    const err = (await failure(c.get('/'))) as HttpError
    expect(err.status).toBe(429)
    expect(err.body).toEqual({ slow: 'down' })
    expect(p.hits).toHaveLength(1)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('does not retry POST or PATCH unless it carries an idempotency key or opts in', async () => {
    // Each method and path fails once (503), then succeeds.
    const seen = new Map<string, number>()
    const p = await peer((req, res) => {
      const k = `${req.method} ${req.url}`
      seen.set(k, (seen.get(k) ?? 0) + 1)
      return seen.get(k) === 1 ? sendJson(res, 503, {}) : sendJson(res, 200, { ok: k })
    })
    const c = client({ baseUrl: p.url, retry: FAST })
    expect(((await failure(c.postJson('/charge', { amount: 1 }))) as HttpError).status).toBe(503)
    expect(((await failure(c.patchJson('/patch', { amount: 1 }))) as HttpError).status).toBe(503)
    expect(p.hits).toHaveLength(2)

    expect(await c.postJson('/keyed', { amount: 1 }, { idempotencyKey: 'charge-42' })).toEqual({ ok: 'POST /keyed' })
    expect(p.hits.slice(2).map((h) => h.headers['idempotency-key'])).toEqual(['charge-42', 'charge-42'])

    expect(await c.patchJson('/thing', { a: 1 }, { retryNonIdempotent: true })).toEqual({ ok: 'PATCH /thing' })
    const optedIn = client({ baseUrl: p.url, retry: { ...FAST, retryNonIdempotent: true } })
    expect(await optedIn.postJson('/x', {})).toEqual({ ok: 'POST /x' })
    // PUT and DELETE are idempotent
    expect(await c.putJson('/thing', { a: 1 })).toEqual({ ok: 'PUT /thing' })
    expect(await c.deleteJson('/thing')).toEqual({ ok: 'DELETE /thing' })
    expect(p.hits).toHaveLength(12)
  })

  it('retries network failures (a reset connection, a refused port)', async () => {
    const p = await peer((req, res, _b, n) => (n === 1 ? req.socket.destroy() : sendJson(res, 200, { ok: true })))
    const c = client({ baseUrl: p.url, retry: FAST })
    expect(await c.getJson('/')).toEqual({ ok: true })
    expect(p.hits).toHaveLength(2)

    const gone = await startPeer(() => {})
    await gone.close()
    const refused = client({ baseUrl: gone.url, retry: { ...FAST, maxRetries: 2 } })
    const err = (await failure(refused.get('/'))) as HttpNetworkError
    expect(err).toBeInstanceOf(HttpNetworkError)
    expect(err.code).toBe('HTTP_NETWORK')
    expect(err.message).toMatch(/ECONNREFUSED.*after 3 attempts/)
  })

  it('a POST that met a network failure is not sent again (it may have been applied); redirects are returned, not followed', async () => {
    const p = await peer((req, res) => {
      if (req.method === 'POST') return req.socket.destroy()
      res.writeHead(302, { location: '/elsewhere' })
      res.end()
    })
    const c = client({ baseUrl: p.url, retry: FAST })
    const err = (await failure(c.postJson('/pay', { amount: 1 }))) as HttpNetworkError
    expect(err.code).toBe('HTTP_NETWORK')
    expect(p.hits).toHaveLength(1)
    const res = await c.get('/old')
    expect(res.status).toBe(302)
    expect(res.headers.location).toBe('/elsewhere')
    expect(p.hits).toHaveLength(2)
  })

  it('backoff grows exponentially with jitter, capped at maxDelayMs', () => {
    expect(backoffMs(0, 100, 10_000, () => 0)).toBe(50)
    expect(backoffMs(0, 100, 10_000, () => 1)).toBe(100)
    expect(backoffMs(3, 100, 10_000, () => 0)).toBe(400)
    expect(backoffMs(3, 100, 10_000, () => 1)).toBe(800)
    expect(backoffMs(20, 100, 10_000, () => 1)).toBe(10_000)
    expect(backoffMs(200, 100, 10_000, () => 0.5)).toBe(7_500)
    const seen = new Set(Array.from({ length: 50 }, () => backoffMs(2, 100, 10_000)))
    expect(seen.size).toBeGreaterThan(10)
    for (const d of seen) expect(d).toBeGreaterThanOrEqual(200)
  })

  it('reads Retry-After: seconds, HTTP dates, junk', () => {
    const now = Date.parse('2026-01-01T00:00:00Z')
    expect(retryAfterMs('120', now)).toBe(120_000)
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000)
    expect(retryAfterMs('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0)
    expect(retryAfterMs('soon', now)).toBeUndefined()
    expect(retryAfterMs('-5', now)).toBeUndefined()
    expect(retryAfterMs(undefined, now)).toBeUndefined()
  })
})

describe('timeouts', () => {
  it('an attempt past timeoutMs is abandoned and retried', async () => {
    const p = await peer((_req, res, _b, n) => {
      if (n === 1) setTimeout(() => sendJson(res, 200, { late: true }), 1500)
      else sendJson(res, 200, { late: false })
    })
    const c = client({ baseUrl: p.url, timeoutMs: 200, retry: FAST })
    expect(await c.getJson('/')).toEqual({ late: false })
  })

  it('an attempt timeout without retries left is HttpTimeoutError (attempt)', async () => {
    const p = await peer((_req, res) => setTimeout(() => sendJson(res, 200, {}), 1500))
    const c = client({ baseUrl: p.url, timeoutMs: 150, retry: { ...FAST, maxRetries: 1 } })
    const err = (await failure(c.get('/'))) as HttpTimeoutError
    expect(err).toBeInstanceOf(HttpTimeoutError)
    expect(err.scope).toBe('attempt')
    expect(err.info.attempts).toBe(2)
  })

  it('totalTimeoutMs bounds every attempt and wait together', async () => {
    const p = await peer((_req, res) => setTimeout(() => sendJson(res, 200, {}), 3000))
    const c = client({ baseUrl: p.url, timeoutMs: 2_000, totalTimeoutMs: 400, retry: FAST })
    const started = Date.now()
    const err = (await failure(c.get('/'))) as HttpTimeoutError
    expect(err.scope).toBe('total')
    expect(err.code).toBe('HTTP_TIMEOUT')
    expect(Date.now() - started).toBeLessThan(1500)
  })

  it("the caller's AbortSignal cancels the call", async () => {
    const p = await peer((_req, res) => setTimeout(() => sendJson(res, 200, {}), 3000))
    const c = client({ baseUrl: p.url })
    const reason = new Error('route gave up')
    const err = await failure(c.get('/', { signal: AbortSignal.timeout(100) }))
    expect((err as Error).name).toBe('TimeoutError')
    const ctl = new AbortController()
    setTimeout(() => ctl.abort(reason), 50)
    expect(await failure(c.get('/', { signal: ctl.signal }))).toBe(reason)
  })
})

describe('auth', () => {
  it('bearer and API-key headers', async () => {
    const p = await peer((req, res) =>
      sendJson(res, 200, { auth: req.headers.authorization ?? null, key: req.headers['x-custom-key'] ?? null }),
    )
    expect(await client({ baseUrl: p.url, auth: bearerAuth('t0k') }).getJson('/')).toEqual({ auth: 'Bearer t0k', key: null })
    let n = 0
    expect(await client({ baseUrl: p.url, auth: bearerAuth(() => `rotating-${++n}`) }).getJson('/')).toEqual({
      auth: 'Bearer rotating-1',
      key: null,
    })
    expect(await client({ baseUrl: p.url, auth: apiKeyAuth('k3y', { header: 'X-Custom-Key' }) }).getJson('/')).toEqual({
      auth: null,
      key: 'k3y',
    })
    expect(await client({ baseUrl: p.url, auth: apiKeyAuth('k3y', { header: 'authorization', prefix: 'Token ' }) }).getJson('/')).toEqual({
      auth: 'Token k3y',
      key: null,
    })
  })

  it('OAuth2 client credentials: one token request for many calls, a new one after expiry, one refresh on 401', async () => {
    let issued = 0
    let clock = 1_000_000
    const tokenServer = await peer((req, res, body) => {
      const form = new URLSearchParams(body)
      const basic = Buffer.from(String(req.headers.authorization).replace('Basic ', ''), 'base64').toString()
      if (form.get('grant_type') !== 'client_credentials' || basic !== 'app:s3cret') return sendJson(res, 401, { error: 'invalid_client' })
      issued++
      sendJson(res, 200, { access_token: `tok-${issued}`, token_type: 'Bearer', expires_in: 60, scope: form.get('scope') })
    })
    // The API accepts only the newest token (a revoked one answers 401).
    const api = await peer((req, res) =>
      req.headers.authorization === `Bearer tok-${issued}`
        ? sendJson(res, 200, { ok: true })
        : sendJson(res, 401, { error: 'invalid_token' }),
    )
    const auth = oauth2ClientCredentials({
      tokenUrl: `${tokenServer.url}/oauth/token`,
      clientId: 'app',
      clientSecret: 's3cret',
      scope: ['read', 'write'],
      now: () => clock,
    })
    const c = client({ baseUrl: api.url, auth })
    await Promise.all([c.getJson('/a'), c.getJson('/b'), c.getJson('/c')])
    expect(auth.fetches).toBe(1) // concurrent calls share one token request
    expect(new URLSearchParams(tokenServer.hits[0]!.body).get('scope')).toBe('read write')

    clock += 29_000 // within 60 s minus the 30 s skew: cached
    await c.getJson('/d')
    expect(auth.fetches).toBe(1)
    clock += 2_000 // past expiry − skew: renewed before the call
    await c.getJson('/e')
    expect(auth.fetches).toBe(2)

    // The provider revokes the token: the 401 drops it, the call gets a new one and succeeds
    issued++
    expect(await c.getJson('/f')).toEqual({ ok: true })
    expect(auth.fetches).toBe(3)
    expect(api.hits.at(-2)!.headers.authorization).toBe('Bearer tok-2')
    expect(api.hits.at(-1)!.headers.authorization).toBe('Bearer tok-4')
  })

  it('a 401 that persists after the refresh is an HttpError (one refresh per call, not a loop)', async () => {
    const tokenServer = await peer((_req, res) => sendJson(res, 200, { access_token: 'never-good', expires_in: 3600 }))
    const api = await peer((_req, res) => sendJson(res, 401, { error: 'nope' }))
    const auth = oauth2ClientCredentials({ tokenUrl: tokenServer.url, clientId: 'a', clientSecret: 'b', authMethod: 'body' })
    const err = (await failure(client({ baseUrl: api.url, auth }).getJson('/'))) as HttpError
    expect(err.status).toBe(401)
    expect(api.hits).toHaveLength(2)
    expect(auth.fetches).toBe(2)
    expect(new URLSearchParams(tokenServer.hits[0]!.body).get('client_secret')).toBe('b')
  })

  it('a token endpoint that refuses or answers nonsense is a clear error', async () => {
    const tokenServer = await peer((req, res) =>
      req.url === '/refuse' ? sendJson(res, 400, { error: 'invalid_scope' }) : sendJson(res, 200, { token: 'wrong field' }),
    )
    const refused = oauth2ClientCredentials({ tokenUrl: `${tokenServer.url}/refuse`, clientId: 'a', clientSecret: 'b' })
    const err = (await failure(refused.token())) as HttpError
    expect(err.status).toBe(400)
    expect(err.body).toEqual({ error: 'invalid_scope' })
    const nonsense = oauth2ClientCredentials({ tokenUrl: `${tokenServer.url}/odd`, clientId: 'a', clientSecret: 'b' })
    const err2 = (await failure(nonsense.token())) as HttpClientError
    expect(err2.code).toBe('HTTP_AUTH')
    expect(err2.message).toMatch(/without an access_token/)
  })
})

describe('logging', () => {
  it("lines carry the caller's logger context (tenant, request or job) and never the query string or credentials", async () => {
    const p = await peer((_req, res, _b, n) => (n === 1 ? sendJson(res, 503, {}) : sendJson(res, 200, {})))
    const { logger, lines } = captureLogger()
    const shared = client({ baseUrl: p.url, name: 'crm', retry: FAST, auth: bearerAuth('secret-token') })
    const reqLog = logger.child({ reqId: 'r-1', tenantId: 'tenant-a' })
    await shared.withLogger(reqLog).get('/contacts', { query: { apiKey: 'leaky' } })
    const retry = lines.find((l) => l.msg === 'http call: retrying')!
    expect(retry).toMatchObject({ http: 'crm', reqId: 'r-1', tenantId: 'tenant-a', status: 503, method: 'GET', url: `${p.url}/contacts` })
    const done = lines.find((l) => l.msg === 'http call')!
    expect(done).toMatchObject({ tenantId: 'tenant-a', status: 200, attempts: 2 })
    const all = JSON.stringify(lines)
    expect(all).not.toContain('leaky')
    expect(all).not.toContain('secret-token')
  })
})

describe('bad input', () => {
  it('bad client options are HTTP_INVALID_OPTIONS naming the option', () => {
    const bad = (opts: unknown, message: RegExp) => {
      let err: unknown
      try {
        createHttpClient(opts as Parameters<typeof createHttpClient>[0])
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(HttpClientError)
      expect((err as HttpClientError).code).toBe('HTTP_INVALID_OPTIONS')
      expect((err as Error).message).toMatch(message)
    }
    bad({ baseUrl: 'not a url' }, /baseUrl "not a url" is not a valid URL/)
    bad({ baseUrl: 'ftp://example.com' }, /baseUrl must be http or https/)
    bad({ baseUrl: 'https://example.com/?a=1' }, /query or fragment/)
    bad({ timeoutMs: -1 }, /timeoutMs must be a number/)
    bad({ timeoutMs: Number.NaN }, /timeoutMs/)
    bad({ totalTimeoutMs: 0 }, /totalTimeoutMs/)
    bad({ retry: { maxRetries: 1.5 } }, /retry.maxRetries must be an integer/)
    bad({ retry: { maxRetries: -1 } }, /retry.maxRetries/)
    bad({ retry: { baseDelayMs: 500, maxDelayMs: 100 } }, /maxDelayMs \(100\) must be >= retry.baseDelayMs/)
    bad({ retry: { statuses: [200] } }, /200 is not a 4xx or 5xx/)
    bad({ retry: { maxRetrys: 2 } }, /unknown retry option "maxRetrys"/)
    bad({ timeout: 5 }, /unknown option "timeout"/)
    bad({ headers: { 'bad header': 'x' } }, /not a valid header name/)
    bad({ headers: { 'x-a': 'line\r\nInjected: 1' } }, /line breaks/)
    bad({ auth: 'token' }, /auth must come from/)
    bad({ maxResponseBytes: 0 }, /maxResponseBytes/)
  })

  it('bad call input is refused before anything is sent', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, {}))
    const c = client({ baseUrl: p.url })
    const noBase = client({})
    const code = async (call: Promise<unknown>, message: RegExp) => {
      const err = (await failure(call)) as HttpClientError
      expect(err.code).toBe('HTTP_INVALID_OPTIONS')
      expect(err.message).toMatch(message)
    }
    await code(noBase.get('/relative'), /relative and the client has no baseUrl/)
    await code(noBase.get('mailto:a@b.c'), /url must be http or https/)
    await code(noBase.get('http://'), /not a valid URL/)
    await code(c.get(''), /path must be a non-empty string/)
    await code(c.request('GE T', '/'), /not an HTTP method/)
    await code(c.get('/', { timeoutMs: 0 }), /timeoutMs/)
    await code(c.get('/', { maxRetries: 1000 }), /maxRetries/)
    await code(c.get('/', { query: { a: { nested: 1 } as never } }), /query "a" must be/)
    await code(c.postJson('/', {}, { idempotencyKey: 'has space' }), /idempotencyKey/)
    await code(c.request('POST', '/', { json: {}, body: 'x' }), /json or body, not both/)
    expect(p.hits).toHaveLength(0)
    // an absolute URL works without a base
    expect(await noBase.getJson(`${p.url}/abs`)).toEqual({})
  })

  it('bad auth options are refused', () => {
    expect(() => bearerAuth('')).toThrow(/bearer token must be a non-empty string/)
    expect(() => apiKeyAuth('k', { header: 'x y' })).toThrow(/not a valid header name/)
    expect(() => oauth2ClientCredentials({ tokenUrl: 'nope', clientId: 'a', clientSecret: 'b' })).toThrow(
      /tokenUrl "nope" is not a valid URL/,
    )
    expect(() => oauth2ClientCredentials({ tokenUrl: 'http://x', clientId: '', clientSecret: 'b' })).toThrow(/clientId/)
    expect(() => oauth2ClientCredentials({ tokenUrl: 'http://x', clientId: 'a', clientSecret: 'b', refreshSkewMs: -1 })).toThrow(
      /refreshSkewMs/,
    )
  })
})
