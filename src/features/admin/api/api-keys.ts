/**
 * /admin/api/api-keys — platform API keys (`tka_…`, ../api-keys.ts), for platform admins (guard.ts): create
 * (the secret is answered once), list every one, revoke (at once: each use reads the key row).
 *
 * Creating needs a logged-in person (403 API_KEY_NOT_ALLOWED with a key): a leaked key must not mint successors
 * that outlive its revocation. Listing and revoking work with a key too (revoking only ever takes power away).
 * Creation and revocation are audited (`admin.api_key_created` / `admin.api_key_revoked`); so is every use
 * (`admin.api_key_used`, by the guard).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { AppOptions } from '../../../core/config.js'
import { audit } from '../../../core/lib/audit.js'
import { forbidden, notFound } from '../../../core/lib/errors.js'
import { errorResponses, IdParams, Text, Uuid } from '../../../core/lib/schemas.js'
import { createAdminApiKeys } from '../api-keys.js'
import { Cursor, DateTime, DateTimeOrNull, Limit, page, tags } from './schemas.js'

const AdminApiKeySchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to recognise it (e.g. tka_live_ab12cd34)' }),
  createdBy: Uuid,
  lastUsedAt: DateTimeOrNull,
  expiresAt: DateTimeOrNull,
  revokedAt: DateTimeOrNull,
  createdAt: DateTime,
})
const CreatedKey = Type.Intersect([
  AdminApiKeySchema,
  Type.Object({ secret: Type.String({ description: 'the key itself (Authorization: Bearer tka_…): shown in this response only, store it now' }) }),
])
const CreateBody = Type.Object(
  { name: Text({ minLength: 1, maxLength: 100 }), expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })) },
  { additionalProperties: false },
)
const ListQuery = Type.Object({ limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false })
const errors = errorResponses(400, 404)

const adminApiKeyRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const db = fastify.host.db
  const keys = createAdminApiKeys(db, config.env, config.platformAdminEmails)

  fastify.post(
    '/',
    {
      schema: {
        tags,
        summary: 'Create a platform API key (the secret is shown once); needs a logged-in platform admin, not a key',
        body: CreateBody,
        response: { 201: CreatedKey, ...errors },
      },
    },
    async (req, reply) => {
      if (req.actorApiKeyId) throw forbidden('API_KEY_NOT_ALLOWED', 'Creating a platform API key needs a logged-in platform admin, not a key')
      const { name, expiresInDays } = req.body
      const { key, secret } = await keys.create({ createdBy: req.user!.id, name, expiresInDays })
      await audit(
        db,
        {
          action: 'admin.api_key_created',
          actorUserId: req.user!.id,
          targetType: 'admin_api_key',
          targetId: key.id,
          metadata: { name, prefix: key.prefix, expiresAt: key.expiresAt },
        },
        req,
      )
      return reply.code(201).send({ ...key, secret })
    },
  )

  fastify.get(
    '/',
    { schema: { tags, summary: 'Every platform API key, newest first (never the secret)', querystring: ListQuery, response: { 200: page(AdminApiKeySchema), ...errors } } },
    async (req) => keys.list(req.query),
  )

  fastify.delete(
    '/:id',
    {
      schema: { tags, summary: 'Revoke a platform API key: it stops at once, in every process', params: IdParams, response: { 204: Type.Null(), ...errors } },
    },
    async (req, reply) => {
      const result = await keys.revoke(req.params.id)
      if (!result) throw notFound('ADMIN_API_KEY_NOT_FOUND', 'No such platform API key')
      if (result.revoked) {
        const { key } = result
        await audit(
          db,
          {
            action: 'admin.api_key_revoked',
            actorUserId: req.user!.id,
            targetType: 'admin_api_key',
            targetId: key.id,
            metadata: { name: key.name, prefix: key.prefix, createdBy: key.createdBy },
          },
          req,
        )
      }
      return reply.code(204).send(null)
    },
  )
}

export default adminApiKeyRoutes
