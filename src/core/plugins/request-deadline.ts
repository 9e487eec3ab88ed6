/**
 * A whole-request deadline (REQUEST_DEADLINE_MS): a request still unanswered after that long gets 503
 * SERVICE_UNAVAILABLE with Retry-After, in the kit's error shape, whatever it is waiting on (a hook, a
 * handler, a library call with no timeout of its own). The timeouts on Postgres and Redis bound the waits
 * we know about; this bounds the ones we don't.
 *
 * Never a second answer: the deadline stands down once any answer has started (a handler's, a hook's, the
 * error handler's), and whatever the handler sends, returns or throws after the deadline answered is
 * dropped (a throw is logged at debug), so Fastify neither warns "already sent" nor logs it as an error.
 * A route that legitimately runs long (a streamed export) opts out with `config: { requestDeadline: false }`.
 */
import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../config.js'
import { errorBody } from '../lib/errors.js'
import { routeConfig } from '../lib/route-config.js'
import { RETRY_AFTER_S } from './errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: no whole-request deadline on this route (it streams or legitimately runs long). */
    requestDeadline?: boolean
  }
}

const kTimer = Symbol('deadlineTimer')
const kAnswering = Symbol('answerStarted')
const kExpired = Symbol('deadlineExpired')
type Tracked = FastifyRequest & { [kTimer]?: NodeJS.Timeout; [kAnswering]?: boolean; [kExpired]?: boolean }
const kSend = Symbol('replySend')
type TrackedReply = FastifyReply & { [kSend]?: FastifyReply['send'] }

const exempt = (req: FastifyRequest) => routeConfig(req).requestDeadline === false

function clear(req: Tracked) {
  if (req[kTimer]) clearTimeout(req[kTimer])
  req[kTimer] = undefined
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const ms = config.requestDeadlineMs
    if (ms <= 0) return

    // Callback-style hooks: nothing here awaits, and a promise per hook per request is measurable (issue 14).
    // Shared functions, no closure per request: the reply's own send is kept on the reply.
    function deadlineSend(this: TrackedReply, payload?: unknown) {
      const req = this.request as Tracked
      if (req[kExpired]) return this // a late answer from the handler: the deadline already answered
      req[kAnswering] = true
      clear(req)
      return this[kSend]!.call(this, payload)
    }
    function expire(req: Tracked, reply: TrackedReply) {
      req[kTimer] = undefined
      if (req[kAnswering] || reply.sent || reply.raw.headersSent || req.raw.destroyed) return
      req[kExpired] = true
      req.log.warn({ code: 'SERVICE_UNAVAILABLE', deadlineMs: ms }, 'request answered 503 at its deadline')
      const body = errorBody(503, 'SERVICE_UNAVAILABLE', 'The request took too long; try again shortly')
      reply[kSend]!.call(reply.code(503).header('retry-after', String(RETRY_AFTER_S.outage)), body)
    }
    fastify.addHook('onRequest', (request, reply, done) => {
      const req = request as Tracked
      if (exempt(req)) return done()
      // Any answer, from anywhere (hooks, handler, error handler), goes through reply.send first.
      const tracked = reply as TrackedReply
      tracked[kSend] = reply.send
      reply.send = deadlineSend
      // Cleared by onResponse. A client that gave up gets no onResponse: its timer runs out and finds the
      // request destroyed (a 'close' listener per request to clear it sooner cost more than the rare timer).
      req[kTimer] = setTimeout(expire, ms, req, tracked)
      done()
    })
    fastify.addHook('onResponse', (req, _reply, done) => {
      clear(req as Tracked)
      done()
    })

    // Results of handlers that finish after their deadline answered are dropped, not sent or logged as errors.
    fastify.addHook('onRoute', (route) => {
      if (route.config?.requestDeadline === false) return
      const handler = route.handler as RouteHandlerMethod
      route.handler = function (this: unknown, request, reply) {
        const req = request as Tracked
        const result: unknown = handler.call(this as never, request, reply)
        // Only promises (async handlers) can settle after the deadline; anything else passes through untouched.
        if (!(result instanceof Promise)) return result
        return result.then(
          (value) => (req[kExpired] ? undefined : value),
          (err) => {
            if (!req[kExpired]) throw err
            req.log.debug({ err }, 'handler failed after its request deadline answered')
            return undefined
          },
        )
      } as RouteHandlerMethod
    })
  },
  { name: 'request-deadline' },
)
