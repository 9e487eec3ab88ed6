/**
 * Every response names its request: `x-request-id` is the id the request's log lines carry as `reqId`
 * (src/core/lib/request-context.ts decides it), so a client or a proxy can quote it in a report.
 * onSend runs for every answer, errors and 404s included.
 */
import fp from 'fastify-plugin'
import { REQUEST_ID_HEADER } from '../lib/request-context.js'

export default fp(
  async (fastify) => {
    fastify.addHook('onSend', async (req, reply) => {
      reply.header(REQUEST_ID_HEADER, req.id)
    })
  },
  { name: 'request-id' },
)
