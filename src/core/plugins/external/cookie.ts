/** Cookie parsing and signing (sessions, OAuth state). Secrets rotate: newest first signs, all verify. */
import cookie from '@fastify/cookie'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../config.js'

export default fp<AppOptions>(
  async (fastify, { config }) => {
    await fastify.register(cookie, { secret: config.session.secrets })
  },
  { name: 'cookie' },
)
