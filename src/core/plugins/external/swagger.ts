/**
 * OpenAPI from the routes' TypeBox schemas, served at /docs/json with the UI at /docs. The contract
 * rules that apply to every route (errors, security, operationIds, …) live in src/core/lib/openapi.ts and
 * are applied here, centrally: register this plugin before any route.
 */
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../config.js'
import { documentRoute, openapiTransform, transformDocument } from '../../lib/openapi.js'
import { CORE_ERROR_CODES } from '../../lib/error-codes.js'
import { ErrorSchema } from '../../lib/schemas.js'

export default fp<AppOptions>(
  async (fastify, { config }) => {
    fastify.addSchema(ErrorSchema)
    // Every route registered from here on (all of them: routes come after the plugins) gets its errors.
    // `requireUser` is read per route: it is decorated by the auth plugin, after this one.
    fastify.addHook('onRoute', (route: RouteOptions) =>
      documentRoute(route, fastify.hasDecorator('requireUser') ? fastify.requireUser : undefined),
    )
    const optionalBodies = new Set<string>()
    const document = transformDocument(optionalBodies)
    // The stable error codes (the core's and every feature's), read at document time: the services come after this plugin.
    const errorCodes = () => (fastify.hasDecorator('services') ? fastify.services.errorCodes : CORE_ERROR_CODES)
    await fastify.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: { title: `${config.appName} API`, version: '0.1.0', description: 'Multi-tenant SaaS server kit' },
        servers: [{ url: config.appBaseUrl }],
        components: {
          securitySchemes: {
            session: { type: 'apiKey', in: 'cookie', name: 'sid', description: 'Session cookie (writes also need x-csrf-token)' },
            apiKey: { type: 'http', scheme: 'bearer', description: 'Tenant API key (tk_live_… / tk_test_…), /api routes only' },
            adminApiKey: { type: 'http', scheme: 'bearer', description: 'Platform API key (tka_live_… / tka_test_…), /admin/api routes only' },
          },
        },
      },
      // Shared schemas keep their $id as the component name ("Error", not "def-0").
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
      transform: openapiTransform(optionalBodies) as never,
      transformObject: ((args: Parameters<typeof document>[0]) => ({ ...document(args), 'x-error-codes': errorCodes() })) as never,
    })
    // Tags start collapsed: with every operation expanded at once (160+), Swagger UI 5 stops rendering after the
    // first few, silently; one tag at a time renders all of them (test/browser/ui.test.ts opens each).
    await fastify.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'none', deepLinking: true } })
  },
  { name: 'swagger' },
)
