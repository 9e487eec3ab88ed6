/** Security headers. The CSP allows the Swagger UI's inline styles on /docs. */
import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'

export default fp(
  async (fastify) => {
    await fastify.register(helmet, {
      contentSecurityPolicy: {
        directives: { 'img-src': ["'self'", 'data:', 'validator.swagger.io'], 'style-src': ["'self'", "'unsafe-inline'"] },
      },
    })
  },
  { name: 'helmet' },
)
