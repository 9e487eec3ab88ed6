/**
 * Outbound HTTP on undici (the seed's `AsyncAPIClient`): one client per peer, made once (at boot or in a
 * feature's services) and used from routes and jobs with the caller's logger, so every line it writes
 * names the request or job and its tenant:
 *
 *   const github = createHttpClient({ name: 'github', baseUrl: 'https://api.github.com', auth: bearerAuth(token) })
 *   const repo = await github.withLogger(req.log).getJson<Repo>('/repos/octo/hello')       // in a route
 *   await github.withLogger(ctx.logger).postJson('/repos/octo/hello/issues', { title }, { idempotencyKey: ctx.jobId })  // in a job
 *
 * What a call does:
 * - every attempt is bounded by `timeoutMs` (connect to the last byte of the body), the whole call with its
 *   retries and waits by `totalTimeoutMs` (HttpTimeoutError, scope 'attempt' or 'total');
 * - 408, 429 and 5xx answers (not 501/505) and network failures are retried up to `retry.maxRetries` times
 *   with exponential backoff and jitter (the n-th wait is between half and all of min(maxDelayMs, baseDelayMs × 2ⁿ)),
 *   or after the peer's `Retry-After` (seconds or an HTTP date) when it gives one. A `Retry-After` longer than
 *   `retry.maxDelayMs`, or a wait that would pass the total deadline, ends the call with the answer it had;
 * - only idempotent methods are retried (GET, HEAD, OPTIONS, PUT, DELETE): a POST or PATCH is retried only
 *   with an `idempotencyKey` (sent as `Idempotency-Key`) or `retryNonIdempotent: true`, since a timed-out POST
 *   may have been applied;
 * - with `auth`, each attempt carries its headers; a 401 makes the auth refresh (an OAuth2 token is fetched
 *   again) and the call is tried once more, once per call;
 * - a status >= 400 after that is an HttpError with the status and the body (parsed when it is JSON);
 * - redirects are not followed (a 3xx is returned as is).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Agent, type Dispatcher, request } from 'undici'
import type { HttpAuth } from './http-auth.js'
import { HttpClientError, HttpError, HttpNetworkError, HttpTimeoutError, invalidOptions } from './http-errors.js'

export interface RetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retrying off). */
  maxRetries?: number
  /** First backoff (default 200 ms), doubling per retry. */
  baseDelayMs?: number
  /** The longest wait between attempts (default 10 s); a longer Retry-After ends the call instead. */
  maxDelayMs?: number
  /** Retry POST and PATCH too (default false): only for calls the peer deduplicates. */
  retryNonIdempotent?: boolean
  /** Statuses worth another attempt (default 408, 429, 500, 502, 503, 504 and the other 5xx but 501 and 505). */
  statuses?: readonly number[]
}

export interface HttpClientOptions {
  /** Prefix of relative paths (`getJson('/users')`); absolute URLs are used as given. */
  baseUrl?: string
  /** Bound as `http` on every log line (default the base URL's host). */
  name?: string
  /** Sent with every call (a call's own headers win). */
  headers?: Record<string, string>
  auth?: HttpAuth
  /** One attempt, connect to the end of the body (default 10 s). */
  timeoutMs?: number
  /** The whole call: every attempt and every wait (default 30 s). */
  totalTimeoutMs?: number
  retry?: RetryOptions
  /** A larger response body is an error (default 10 MiB). */
  maxResponseBytes?: number
  /** Where lines go (default: nowhere). `withLogger(req.log)` gives a client writing to a request's or job's logger. */
  logger?: Logger
  /** undici dispatcher (default: an Agent of this client's own, closed by close()). */
  dispatcher?: Dispatcher
  /** Randomness of the jitter (tests). */
  random?: () => number
}

export type QueryValue = string | number | boolean | null | undefined | readonly (string | number | boolean)[]

export interface RequestOptions {
  query?: Record<string, QueryValue>
  headers?: Record<string, string>
  /** A JSON body (content-type set). */
  json?: unknown
  /** A raw body (set content-type yourself). */
  body?: string | Uint8Array
  timeoutMs?: number
  totalTimeoutMs?: number
  /** Sent as `Idempotency-Key`; makes a POST or PATCH retryable. */
  idempotencyKey?: string
  retryNonIdempotent?: boolean
  /** Override the client's retry count for this call. */
  maxRetries?: number
  /** Abort the call (the abort reason is thrown). */
  signal?: AbortSignal
  /** Throw an HttpError for a status >= 400 (default true); false returns every answer. */
  throwHttpErrors?: boolean
}

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** Attempts it took (1 = no retry). */
  attempts: number
  text(): string
  /** The body as JSON; HttpError HTTP_INVALID_JSON when it is not. */
  json<T = unknown>(): T
}

export interface HttpClient {
  request(method: string, path: string, opts?: RequestOptions): Promise<HttpResponse>
  get(path: string, opts?: RequestOptions): Promise<HttpResponse>
  getJson<T = unknown>(path: string, opts?: RequestOptions): Promise<T>
  postJson<T = unknown>(path: string, json: unknown, opts?: RequestOptions): Promise<T>
  putJson<T = unknown>(path: string, json: unknown, opts?: RequestOptions): Promise<T>
  patchJson<T = unknown>(path: string, json: unknown, opts?: RequestOptions): Promise<T>
  /** DELETE; the parsed body, or undefined for an empty one (204). */
  deleteJson<T = unknown>(path: string, opts?: RequestOptions): Promise<T | undefined>
  /** The same client (connections, auth, token cache) logging to `logger` (a request's `req.log`, a job's `ctx.logger`). */
  withLogger(logger: Logger): HttpClient
  /** Closes the client's own connections (not a dispatcher it was given). */
  close(): Promise<void>
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
const DEFAULT_STATUSES = [408, 429, 500, 502, 503, 504, 506, 507, 508, 509, 510, 511, 520, 521, 522, 523, 524, 529]
const MAX_TIMER_MS = 2 ** 31 - 1
const KNOWN_OPTIONS = new Set([
  'baseUrl',
  'name',
  'headers',
  'auth',
  'timeoutMs',
  'totalTimeoutMs',
  'retry',
  'maxResponseBytes',
  'logger',
  'dispatcher',
  'random',
])
const KNOWN_RETRY = new Set(['maxRetries', 'baseDelayMs', 'maxDelayMs', 'retryNonIdempotent', 'statuses'])
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

function positiveMs(name: string, v: unknown, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0) || v > MAX_TIMER_MS)
    throw invalidOptions(
      `${name} must be a number of milliseconds ${allowZero ? '>= 0' : '> 0'} (at most ${MAX_TIMER_MS}), got ${String(v)}`,
    )
  return v
}
function retryCount(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 100)
    throw invalidOptions(`${name} must be an integer from 0 to 100, got ${String(v)}`)
  return v
}
function checkHeaders(name: string, headers: unknown): Record<string, string> {
  if (headers === undefined) return {}
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers))
    throw invalidOptions(`${name} must be an object of strings`)
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) {
    if (!TOKEN.test(k)) throw invalidOptions(`${name}: "${k}" is not a valid header name`)
    if (typeof v !== 'string') throw invalidOptions(`${name}: header "${k}" must be a string`)
    if (/[\r\n\0]/.test(v)) throw invalidOptions(`${name}: header "${k}" must not contain line breaks`)
    out[k.toLowerCase()] = v
  }
  return out
}
function httpUrl(what: string, value: string): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw invalidOptions(`${what} "${value}" is not a valid URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidOptions(`${what} must be http or https, not ${url.protocol}`)
  return url
}

/**
 * How long to wait per `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date; undefined when absent
 * or unreadable (then the backoff applies). A date in the past is 0.
 */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim()
  if (!v) return undefined
  if (/^\d+$/.test(v)) return Number(v) * 1000
  // An HTTP date names its day and month ("Wed, 21 Oct 2015 07:28:00 GMT"); Date.parse alone would take "-5" for a year.
  const at = /^[A-Za-z]{3}/.test(v) ? Date.parse(v) : Number.NaN
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}

/** The wait before retry number `retry` (0-based): between half and all of min(maxDelayMs, baseDelayMs × 2^retry). */
export function backoffMs(retry: number, baseDelayMs: number, maxDelayMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(retry, 30))
  return Math.round(cap / 2 + random() * (cap / 2))
}

function appendQuery(url: URL, query: Record<string, QueryValue> | undefined) {
  if (!query) return
  if (typeof query !== 'object' || Array.isArray(query)) throw invalidOptions('query must be an object')
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null) continue
    for (const item of Array.isArray(v) ? v : [v]) {
      if (!['string', 'number', 'boolean'].includes(typeof item)) throw invalidOptions(`query "${k}" must be a string, number or boolean`)
      url.searchParams.append(k, String(item))
    }
  }
}

async function readBody(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) {
      body.destroy()
      throw new HttpClientError('HTTP_BODY_TOO_LARGE', `response body over ${limit} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function parsedBody(body: Buffer, headers: Record<string, string | string[] | undefined>): unknown {
  const text = body.toString('utf8')
  const type = String(headers['content-type'] ?? '')
  if (/[/+]json\b/i.test(type)) {
    try {
      return JSON.parse(text)
    } catch {}
  }
  return text
}

export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  if (typeof options !== 'object' || options === null) throw invalidOptions('options must be an object')
  for (const k of Object.keys(options)) if (!KNOWN_OPTIONS.has(k)) throw invalidOptions(`unknown option "${k}"`)
  const base = options.baseUrl === undefined ? undefined : httpUrl('baseUrl', options.baseUrl)
  if (base && (base.search || base.hash)) throw invalidOptions('baseUrl must not have a query or fragment')
  const retry = options.retry ?? {}
  for (const k of Object.keys(retry)) if (!KNOWN_RETRY.has(k)) throw invalidOptions(`unknown retry option "${k}"`)
  const cfg = {
    headers: checkHeaders('headers', options.headers),
    timeoutMs: positiveMs('timeoutMs', options.timeoutMs ?? 10_000),
    totalTimeoutMs: positiveMs('totalTimeoutMs', options.totalTimeoutMs ?? 30_000),
    maxRetries: retryCount('retry.maxRetries', retry.maxRetries ?? 3),
    baseDelayMs: positiveMs('retry.baseDelayMs', retry.baseDelayMs ?? 200, true),
    maxDelayMs: positiveMs('retry.maxDelayMs', retry.maxDelayMs ?? 10_000, true),
    retryNonIdempotent: retry.retryNonIdempotent === true,
    statuses: new Set(retry.statuses ?? DEFAULT_STATUSES),
    maxResponseBytes: options.maxResponseBytes ?? 10 * 1024 * 1024,
    random: options.random ?? Math.random,
  }
  if (cfg.maxDelayMs < cfg.baseDelayMs)
    throw invalidOptions(`retry.maxDelayMs (${cfg.maxDelayMs}) must be >= retry.baseDelayMs (${cfg.baseDelayMs})`)
  if (!Number.isInteger(cfg.maxResponseBytes) || cfg.maxResponseBytes <= 0)
    throw invalidOptions('maxResponseBytes must be a positive integer')
  for (const s of cfg.statuses)
    if (!Number.isInteger(s) || s < 400 || s > 599) throw invalidOptions(`retry.statuses: ${s} is not a 4xx or 5xx status`)
  if (options.auth !== undefined && typeof options.auth?.headers !== 'function')
    throw invalidOptions('auth must come from bearerAuth, apiKeyAuth or oauth2ClientCredentials')
  const ownAgent = options.dispatcher ? undefined : new Agent({ keepAliveTimeout: 4_000, headersTimeout: 0, bodyTimeout: 0 })
  const dispatcher = options.dispatcher ?? ownAgent!
  const name = options.name ?? base?.host ?? 'http'

  function resolveUrl(path: string): URL {
    if (typeof path !== 'string' || path.length === 0) throw invalidOptions('path must be a non-empty string')
    if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return httpUrl('url', path)
    if (!base) throw invalidOptions(`"${path}" is relative and the client has no baseUrl`)
    const url = new URL(base)
    const [pathname, search] = path.split('?', 2) as [string, string | undefined]
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/${pathname.replace(/^\/+/, '')}`
    if (search) url.search = search
    return url
  }

  function make(logger: Logger | undefined): HttpClient {
    const log = logger?.child({ http: name })

    async function call(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse> {
      if (typeof method !== 'string' || !TOKEN.test(method)) throw invalidOptions(`"${method}" is not an HTTP method`)
      method = method.toUpperCase()
      const url = resolveUrl(path)
      appendQuery(url, opts.query)
      const where = `${url.origin}${url.pathname}`
      if (opts.json !== undefined && opts.body !== undefined) throw invalidOptions('give json or body, not both')
      const timeoutMs = positiveMs('timeoutMs', opts.timeoutMs ?? cfg.timeoutMs)
      const totalTimeoutMs = positiveMs('totalTimeoutMs', opts.totalTimeoutMs ?? cfg.totalTimeoutMs)
      const maxRetries = retryCount('maxRetries', opts.maxRetries ?? cfg.maxRetries)
      const headers = { ...cfg.headers, ...checkHeaders('headers', opts.headers) }
      let body: string | Uint8Array | undefined = opts.body
      if (opts.json !== undefined) {
        body = JSON.stringify(opts.json)
        headers['content-type'] ??= 'application/json'
      }
      if (opts.idempotencyKey !== undefined) {
        if (typeof opts.idempotencyKey !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(opts.idempotencyKey))
          throw invalidOptions('idempotencyKey must be 1-255 visible ASCII characters')
        headers['idempotency-key'] = opts.idempotencyKey
      }
      const retryable =
        IDEMPOTENT.has(method) || opts.idempotencyKey !== undefined || (opts.retryNonIdempotent ?? cfg.retryNonIdempotent) === true
      const started = Date.now()
      const deadline = started + totalTimeoutMs
      const total = new AbortController()
      const totalTimer = setTimeout(() => total.abort(), totalTimeoutMs)
      let attempts = 0
      let retries = 0
      let refreshed = false
      const info = () => ({ method, url: where, attempts })

      try {
        for (;;) {
          attempts++
          const attempt = new AbortController()
          const attemptTimer = setTimeout(() => attempt.abort(), timeoutMs)
          const signal = AbortSignal.any([total.signal, attempt.signal, ...(opts.signal ? [opts.signal] : [])])
          let response: HttpResponse | undefined
          let failure: HttpClientError | undefined
          try {
            const authHeaders = options.auth ? await options.auth.headers() : {}
            const res = await request(url, {
              method: method as Dispatcher.HttpMethod,
              headers: { ...headers, ...authHeaders },
              body,
              signal,
              dispatcher,
            })
            const buf = await readBody(res.body, cfg.maxResponseBytes)
            const resHeaders = res.headers
            const n = attempts
            response = {
              status: res.statusCode,
              headers: resHeaders,
              body: buf,
              attempts: n,
              text: () => buf.toString('utf8'),
              json<T>() {
                try {
                  return JSON.parse(buf.toString('utf8')) as T
                } catch {
                  throw new HttpError(
                    'HTTP_INVALID_JSON',
                    { method, url: where, attempts: n, status: res.statusCode, body: buf.toString('utf8'), headers: resHeaders },
                    `${method} ${where} answered ${res.statusCode} with a body that is not JSON`,
                  )
                }
              },
            }
          } catch (err) {
            if (opts.signal?.aborted) throw opts.signal.reason ?? err
            if (total.signal.aborted) throw new HttpTimeoutError('total', totalTimeoutMs, info())
            if (err instanceof HttpClientError && err.code !== 'HTTP_NETWORK') throw err
            failure = attempt.signal.aborted ? new HttpTimeoutError('attempt', timeoutMs, info()) : new HttpNetworkError(info(), err)
          } finally {
            clearTimeout(attemptTimer)
          }

          if (response) {
            if (response.status === 401 && options.auth?.refresh && !refreshed) {
              refreshed = true
              if (await options.auth.refresh()) {
                log?.info({ method, url: where, attempt: attempts }, 'http 401: credentials refreshed, trying once more')
                continue
              }
            }
            const ok = response.status < 400
            if (ok || !retryable || !cfg.statuses.has(response.status) || retries >= maxRetries) {
              log?.[ok ? 'debug' : 'warn'](
                { method, url: where, status: response.status, attempts, durationMs: Date.now() - started },
                'http call',
              )
              if (ok || opts.throwHttpErrors === false) return response
              throw new HttpError('HTTP_STATUS', {
                ...info(),
                status: response.status,
                body: parsedBody(response.body, response.headers),
                headers: response.headers,
              })
            }
          } else if (!retryable || retries >= maxRetries) {
            log?.warn({ method, url: where, err: failure, attempts, durationMs: Date.now() - started }, 'http call failed')
            throw failure!
          }

          // Another attempt: when the peer says, else the backoff.
          const after = response ? retryAfterMs(response.headers['retry-after']) : undefined
          const endWith = (why: string) => {
            log?.warn({ method, url: where, status: response?.status, attempts, why }, 'http call failed')
            if (!response) return failure!
            return new HttpError('HTTP_STATUS', {
              ...info(),
              status: response.status,
              body: parsedBody(response.body, response.headers),
              headers: response.headers,
            })
          }
          const delay = after ?? backoffMs(retries, cfg.baseDelayMs, cfg.maxDelayMs, cfg.random)
          const giveUp =
            after !== undefined && after > cfg.maxDelayMs
              ? `Retry-After ${after} ms is over retry.maxDelayMs ${cfg.maxDelayMs}`
              : Date.now() + delay >= deadline
                ? `the next attempt (in ${delay} ms) would pass totalTimeoutMs`
                : undefined
          if (giveUp) {
            if (response && opts.throwHttpErrors === false) return response
            throw endWith(giveUp)
          }
          retries++
          log?.warn(
            {
              method,
              url: where,
              attempt: attempts,
              ...(response ? { status: response.status } : { err: failure }),
              delayMs: delay,
              retryAfter: after !== undefined,
            },
            'http call: retrying',
          )
          await sleep(delay, undefined, { signal: opts.signal ? AbortSignal.any([opts.signal, total.signal]) : total.signal }).catch(
            (err) => {
              if (opts.signal?.aborted) throw opts.signal.reason ?? err
              throw new HttpTimeoutError('total', totalTimeoutMs, info())
            },
          )
        }
      } finally {
        clearTimeout(totalTimer)
      }
    }

    const json = async <T>(method: string, path: string, payload: unknown, opts: RequestOptions = {}): Promise<T> => {
      const res = await call(method, path, {
        ...opts,
        ...(payload !== undefined ? { json: payload } : {}),
        headers: { accept: 'application/json', ...opts.headers },
      })
      return res.json<T>()
    }

    return {
      request: call,
      get: (path, opts) => call('GET', path, opts),
      getJson: (path, opts) => json('GET', path, undefined, opts),
      postJson: (path, payload, opts) => json('POST', path, payload, opts),
      putJson: (path, payload, opts) => json('PUT', path, payload, opts),
      patchJson: (path, payload, opts) => json('PATCH', path, payload, opts),
      async deleteJson<T>(path: string, opts: RequestOptions = {}) {
        const res = await call('DELETE', path, { ...opts, headers: { accept: 'application/json', ...opts.headers } })
        return res.body.length === 0 ? undefined : res.json<T>()
      },
      withLogger: (l) => make(l),
      async close() {
        await ownAgent?.close()
      },
    }
  }

  return make(options.logger)
}
