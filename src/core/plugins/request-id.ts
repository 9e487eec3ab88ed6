/**
 * Every response names its request: `x-request-id` is the id the request's log lines carry as `reqId`
 * (src/core/lib/request-context.ts decides it), so a client or a proxy can quote it in a report.
 * onSend runs for every answer, errors and 404s included.
 */
import fp from 'fastify-plugin'
import { REQUEST_ID_HEADER } from '../lib/request-context.js'

export default fp(
  async (fastify) => {
    // Callback style, like the other per-request hooks with nothing to await: no promise per request.
    fastify.addHook('onSend', (req, reply, _payload, done) => {
      reply.header(REQUEST_ID_HEADER, req.id)
      done()
    })
  },
  { name: 'request-id' },
)
