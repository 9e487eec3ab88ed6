/**
 * Security headers: helmet's defaults, with a CSP that allows the Swagger UI's inline styles on /docs.
 *
 * helmet computes the header set ONCE, at startup, and one synchronous hook copies it onto every reply.
 * @fastify/helmet (kept as a devDependency for the equivalence test) would instead call
 * `helmet(options)` on every request (rebuilding its middleware
 * chain and re-parsing the CSP in two async hooks, then ~13 raw `setHeader` calls): ~4 % of the CPU of
 * an authenticated API read. The headers and their values are the same; the options are static, so the
 * result can't differ between requests. (No route uses per-route helmet options or CSP nonces.)
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import helmetMiddleware from 'helmet'

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

export default fp(
  async (fastify) => {
    const headers = Object.entries(securityHeaders())
    // Fastify-level headers (not raw setHeader) keep Node's writeHead on its fast path; errors keep them too.
    // One reply.header() each from a list made once (reply.headers(object) makes a key array per request).
    fastify.addHook('onRequest', (_req: FastifyRequest, reply: FastifyReply, done: () => void) => {
      for (let i = 0; i < headers.length; i++) reply.header(headers[i]![0], headers[i]![1])
      done()
    })
  },
  { name: 'helmet' },
)
