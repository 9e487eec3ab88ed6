/** OpenAPI from the routes' TypeBox schemas, served at /docs/json with the UI at /docs. */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { ErrorSchema } from '../../lib/schemas.js'

export default fp(
  async (fastify) => {
    fastify.addSchema(ErrorSchema)
    await fastify.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: 'tenantkit API', version: '0.1.0', description: 'Multi-tenant SaaS server kit' },
        security: [{ session: [] }, { apiKey: [] }],
        components: {
          securitySchemes: {
            session: { type: 'apiKey', in: 'cookie', name: 'sid', description: 'Session cookie (writes also need x-csrf-token)' },
            apiKey: { type: 'http', scheme: 'bearer', description: 'Tenant API key (tk_live_… / tk_test_…), /api routes only' },
          },
        },
      },
    })
    await fastify.register(swaggerUi, { routePrefix: '/docs' })
  },
  { name: 'swagger' },
)
