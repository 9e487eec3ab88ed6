/**
 * One HTTP POST of a signed webhook body, with node:http(s) so the connection resolves its name through
 * the SSRF guard (ssrf.ts). Never follows redirects (a 3xx is a failure: the endpoint must be the final URL);
 * a whole attempt (connect to the end of the response) is bounded by `timeoutMs`. Never throws: the outcome says what happened.
 */
import http from 'node:http'
import https from 'node:https'
import { assertLiteralAllowed, ForbiddenTarget, guardedLookup } from './ssrf.js'

export interface SendOutcome {
  ok: boolean
  status: number | null
  /** The first KB of the response body. */
  body: string | null
  error: string | null
  durationMs: number
  /** Refused by the SSRF guard: no retry can help until the endpoint changes. */
  forbidden: boolean
}

const MAX_BODY = 1024

export function sendWebhook(
  url: string,
  body: string,
  headers: Record<string, string>,
  opts: { timeoutMs: number; allowPrivate: boolean },
): Promise<SendOutcome> {
  const started = performance.now()
  const done = (o: Omit<SendOutcome, 'durationMs'>): SendOutcome => ({ ...o, durationMs: Math.round(performance.now() - started) })
  return new Promise((resolve) => {
    let target: URL
    try {
      target = new URL(url)
      assertLiteralAllowed(target, opts.allowPrivate)
    } catch (err) {
      const forbidden = err instanceof ForbiddenTarget
      return resolve(done({ ok: false, status: null, body: null, error: (err as Error).message, forbidden }))
    }
    const client = target.protocol === 'https:' ? https : http
    const req = client.request(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'tenantkit-webhooks/1', ...headers, 'content-length': Buffer.byteLength(body) },
        lookup: guardedLookup(opts.allowPrivate) as never,
        signal: AbortSignal.timeout(opts.timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_BODY) chunks.push(chunk)
          size += chunk.length
        })
        res.on('end', () => {
          const status = res.statusCode ?? 0
          const text = Buffer.concat(chunks).subarray(0, MAX_BODY).toString('utf8')
          const ok = status >= 200 && status < 300
          resolve(done({ ok, status, body: text, error: ok ? null : `HTTP ${status}`, forbidden: false }))
        })
        res.on('error', (err) => resolve(done({ ok: false, status: res.statusCode ?? null, body: null, error: err.message, forbidden: false })))
      },
    )
    req.on('error', (err) => {
      const forbidden = err instanceof ForbiddenTarget || (err as { cause?: unknown }).cause instanceof ForbiddenTarget
      const error = err.name === 'AbortError' ? `timed out after ${opts.timeoutMs} ms` : err.message
      resolve(done({ ok: false, status: null, body: null, error, forbidden }))
    })
    req.end(body)
  })
}

