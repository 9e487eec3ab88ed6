/**
 * /api/api-keys — the resolved tenant's API keys (src/core/identity/api-keys.ts), managed by its admins (or a
 * member with a grant on api_keys:manage) from a logged-in session. An API key can't manage keys: a
 * leaked key must not be able to mint successors that outlive its revocation (403 API_KEY_NOT_ALLOWED).
 *
 * POST answers the secret once; nothing can show it again. A key's role can't exceed its creator's
 * effective role (403 INSUFFICIENT_ROLE); later demotions cap it again at use (src/core/plugins/tenancy.ts).
 * Creating a key needs a verified email address (403 EMAIL_NOT_VERIFIED): an account registered with
 * someone else's address must not mint credentials that outlive the owner reclaiming it.
 * The tenant's plan must include `api_access` (403 FEATURE_NOT_IN_PLAN; requests made with a key are
 * refused the same way once the plan loses it) and have room under its `apiKeys` limit (403 LIMIT_REACHED).
 * DELETE revokes (the row stays, listed with revokedAt, for the audit trail); revoking twice is a no-op.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { and, eq, gt, isNull, or, sql } from 'drizzle-orm'
import { apiKeys as apiKeysTable } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../../core/db/host.js'
import { Type } from 'typebox'
import { emailNotVerified } from '../../core/identity/users.js'
import { audit } from '../../core/lib/audit.js'
import { forbidden, notFound } from '../../core/lib/errors.js'
import { errorResponses, IdParams, Text, Uuid } from '../../core/lib/schemas.js'
import { type AccessRule, ROLE_LEVEL } from '../../core/tenancy/rbac.js'
import { requireApiAccess, requireBelowLimit } from '../billing/index.js'

/** Keys that still work (not revoked, not expired): what the plan's `apiKeys` limit counts. */
async function countLiveKeys(db: HostDb, tenantId: string): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(apiKeysTable)
    .where(and(eq(apiKeysTable.tenantId, tenantId), isNull(apiKeysTable.revokedAt), or(isNull(apiKeysTable.expiresAt), gt(apiKeysTable.expiresAt, sql`now()`))))
  return row!.n
}

const KeyRole = Type.Union([Type.Literal('admin'), Type.Literal('editor'), Type.Literal('viewer')])
const DateOrNull = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
const ApiKeySchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to recognise it (e.g. tk_live_ab12cd34)' }),
  role: KeyRole,
  createdBy: Uuid,
  lastUsedAt: DateOrNull,
  expiresAt: DateOrNull,
  revokedAt: DateOrNull,
  createdAt: Type.String({ format: 'date-time' }),
})
const CreatedKey = Type.Intersect([
  ApiKeySchema,
  Type.Object({ secret: Type.String({ description: 'the key itself: shown in this response only, store it now' }) }),
])
const CreateBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 100 }),
    role: KeyRole,
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  },
  { additionalProperties: false },
)
const ListQuery = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }), cursor: Type.Optional(Uuid) },
  { additionalProperties: false },
)
const KeyPage = Type.Object({ items: Type.Array(ApiKeySchema), nextCursor: Type.Union([Uuid, Type.Null()]) })

const tags = ['api-keys']
const guarded = errorResponses(400, 401, 403, 404, 409, 503)
const access: AccessRule = { minRole: 'admin', resource: 'api_keys', action: 'manage' }

const apiKeyRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { apiKeys, host } = fastify

  fastify.post(
    '/',
    {
      config: { access, sessionOnly: true },
      schema: {
        tags,
        summary: 'Create an API key (the secret is shown once)',
        description:
          'Needs api_access in the tenant’s plan (403 FEATURE_NOT_IN_PLAN); 403 LIMIT_REACHED (details.limit, details.resource) when the tenant has as many live keys as its plan allows.',
        body: CreateBody,
        response: { 201: CreatedKey, ...guarded },
      },
    },
    async (req, reply) => {
      const { name, role, expiresInDays } = req.body
      // Read fresh (the session's snapshot may be 30 s old): an unproven address can't mint credentials.
      if (!(await fastify.users.findById(req.user!.id))?.emailVerifiedAt) throw emailNotVerified()
      const mine = req.role!
      if (ROLE_LEVEL[role] > ROLE_LEVEL[mine]) {
        throw forbidden('INSUFFICIENT_ROLE', `A key can't have a role above yours (${mine})`, { requiredRole: role, role: mine })
      }
      const tenantId = req.tenant!.id
      const plan = await fastify.entitlements.get(tenantId)
      requireApiAccess(plan)
      await requireBelowLimit(plan, 'apiKeys', () => countLiveKeys(host.db, tenantId))
      const { key, secret } = await apiKeys.create({ tenantId, createdBy: req.user!.id, name, role, expiresInDays })
      await audit(
        host.db,
        {
          action: 'api_key.created',
          actorUserId: req.user!.id,
          tenantId,
          targetType: 'api_key',
          targetId: key.id,
          metadata: { name, role, prefix: key.prefix, expiresAt: key.expiresAt },
        },
        req,
      )
      return reply.code(201).send({ ...key, secret })
    },
  )

  fastify.get(
    '/',
    {
      config: { access, sessionOnly: true },
      schema: {
        tags,
        summary: "The tenant's API keys, newest first (never the secret)",
        querystring: ListQuery,
        response: { 200: KeyPage, ...guarded },
      },
    },
    async (req) => apiKeys.list(req.tenant!.id, req.query),
  )

  fastify.delete(
    '/:id',
    {
      config: { access, sessionOnly: true },
      schema: {
        tags,
        summary: 'Revoke an API key (at once, in every process)',
        params: IdParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const result = await apiKeys.revoke(tenantId, req.params.id)
      if (!result) throw notFound('API_KEY_NOT_FOUND', 'No such API key in this tenant')
      if (result.revoked) {
        const { key } = result
        await audit(
          host.db,
          {
            action: 'api_key.revoked',
            actorUserId: req.user!.id,
            tenantId,
            targetType: 'api_key',
            targetId: key.id,
            metadata: { name: key.name, role: key.role, prefix: key.prefix },
          },
          req,
        )
      }
      return reply.code(204).send(null)
    },
  )
}

export default apiKeyRoutes
