/**
 * Security headers, in two sets chosen per route when it is registered:
 *
 * - Pages and everything else (docs UI, auth, /me, 404s): helmet's defaults, with a CSP that allows the
 *   Swagger UI's inline styles on /docs.
 * - JSON API routes (under /api, /t/:tenant/api and /admin/api): the set the OWASP REST Security Cheat
 *   Sheet gives for API answers: `Cache-Control: no-store` (tenant data must not sit in a shared cache),
 *   `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` (nothing loads or frames a JSON
 *   answer a browser is pointed at), X-Frame-Options DENY, nosniff, HSTS, CORP same-origin and no
 *   referrer. The document-only headers (COOP, Origin-Agent-Cluster, DNS prefetch, X-Download-Options,
 *   X-Permitted-Cross-Domain-Policies, X-XSS-Protection) mean nothing on JSON, and every header costs
 *   on every answer (issue 14's request plane: ten fewer per API answer).
 *
 * helmet computes its set ONCE, at startup, and one synchronous hook copies the route's set onto every reply.
 * @fastify/helmet (kept as a devDependency for the equivalence test) would instead call
 * `helmet(options)` on every request (rebuilding its middleware
 * chain and re-parsing the CSP in two async hooks, then ~13 raw `setHeader` calls): ~4 % of the CPU of
 * an authenticated API read. The headers and their values are the same; the options are static, so the
 * result can't differ between requests. (No route uses per-route helmet options or CSP nonces.)
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import helmetMiddleware from 'helmet'
import { createRequire } from 'node:module'
import { routeConfig } from '../../lib/route-config.js'

// Fastify's own symbol for a reply's header object (fastify/lib/symbols.js, pinned with fastify);
// test/security-headers.test.ts fails if the headers stop arriving.
const { kReplyHeaders } = createRequire(import.meta.url)('fastify/lib/symbols.js') as { kReplyHeaders: symbol }

interface HeaderSink {
  setHeader(name: string, value: string | number): void
  removeHeader(name: string): void
}
type Helmet = (options?: object) => (req: unknown, res: HeaderSink, next: (err?: unknown) => void) => void

const helmet = helmetMiddleware as unknown as Helmet

export const HELMET_OPTIONS = {
  contentSecurityPolicy: {
    directives: { 'img-src': ["'self'", 'data:', 'validator.swagger.io'], 'style-src': ["'self'", "'unsafe-inline'"] },
  },
}

/** The headers helmet sets for `options`, as a lower-cased name → value object. */
export function securityHeaders(options: object = HELMET_OPTIONS): Record<string, string> {
  const headers: Record<string, string> = {}
  const sink: HeaderSink = {
    setHeader: (name, value) => {
      headers[name.toLowerCase()] = String(value)
    },
    removeHeader: (name) => {
      delete headers[name.toLowerCase()]
    },
  }
  helmet(options)({}, sink, (err) => {
    if (err) throw err
  })
  return headers
}

/** The headers of a JSON API answer (see above); HSTS as helmet sets it on pages. */
export const API_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'cross-origin-resource-policy': 'same-origin',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
}

/** A JSON API route: under /api, /t/:tenant/api or /admin/api. */
export const isApiRoute = (url: string) => /(^|\/)api(\/|$)/.test(url)

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set when the route is registered: which security header set its answers carry. */
    securityHeaders?: 'api'
  }
}

export default fp(
  async (fastify) => {
    const page = securityHeaders()
    const api = API_SECURITY_HEADERS
    fastify.addHook('onRoute', (route) => {
      if (isApiRoute(route.url)) route.config = { ...route.config, securityHeaders: 'api' }
    })
    // Fastify-level headers (not raw setHeader) keep Node's writeHead on its fast path; errors keep them too.
    // The reply's header object starts as a copy of the route's set (one object spread) instead of one
    // reply.header() per header: each lower-cases its name and does a keyed store with a different key at
    // one site (~1 µs per header in the profile of an API read). Headers set before this hook win.
    fastify.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: () => void) => {
      const target = reply as unknown as Record<symbol, Record<string, unknown>>
      target[kReplyHeaders] = { ...(routeConfig(req).securityHeaders === 'api' ? api : page), ...target[kReplyHeaders] }
      done()
    })
  },
  { name: 'helmet' },
)
