/**
 * GET /api/audit-logs — the resolved tenant's entries of the platform audit log (sys_audit_logs rows with its
 * tenant_id: members, invitations, API keys, billing, lifecycle…), for its admins, newest first, filtered by
 * action prefix, actor and time range [since, until).
 *
 * JSON (default, every plan): pages of `limit` with an id cursor (UUIDv7 ids: id order is time order).
 * `?format=jsonl` (plans with the `audit_log_export` feature, else 403 FEATURE_NOT_IN_PLAN): every matching
 * entry as JSON lines, streamed from a postgres.js cursor a batch at a time (flat memory; each line is built
 * by Postgres). The gate is a route-level preValidation hook, like `config.billing`'s (whose gates are per
 * route, not per query), so a refused caller learns nothing from a 400 first. The export itself is audited.
 */
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { type Static, Type } from 'typebox'
import type { Sql } from '../../core/db/connect.js'
import { audit } from '../../core/lib/audit.js'
import { badRequest } from '../../core/lib/errors.js'
import { errorResponses, Text, Uuid, uuid } from '../../core/lib/schemas.js'
import { requireFeature } from '../billing/index.js'

export const AUDIT_LOG_EXPORT = 'audit_log_export'

const StringOrNull = Type.Union([Type.String(), Type.Null()])
const AuditEntry = Type.Object({
  id: Uuid,
  action: Type.String(),
  actorUserId: Type.Union([Uuid, Type.Null()]),
  targetType: StringOrNull,
  targetId: StringOrNull,
  ip: StringOrNull,
  userAgent: StringOrNull,
  metadata: Type.Record(Type.String(), Type.Unknown()),
  createdAt: Type.String({ format: 'date-time' }),
})

const Query = Type.Object(
  {
    action: Type.Optional(Text({ minLength: 1, maxLength: 100, description: 'Action prefix: `member.` matches member.removed, member.role_changed…' })),
    actorUserId: Type.Optional(Uuid),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'From this instant (inclusive)' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'Before this instant (exclusive)' })),
    format: Type.Union([Type.Literal('json'), Type.Literal('jsonl')], {
      default: 'json',
      description: 'jsonl: every matching entry as JSON lines (needs the audit_log_export plan feature)',
    }),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(uuid({ description: 'cursor: nextCursor of the previous page' })),
  },
  { additionalProperties: false },
)
type Filter = Omit<Static<typeof Query>, 'format' | 'limit' | 'cursor'>

const EXPORT_BATCH = 1000
/** The export's cursor is one statement for as long as the client reads: its connection gets this bound, not the pool's 30 s. */
const EXPORT_STATEMENT_TIMEOUT_MS = 30 * 60_000

function whereOf(sql: Sql, tenantId: string, f: Filter, cursor?: string) {
  const parts = [
    f.actorUserId ? sql`actor_user_id = ${f.actorUserId}` : undefined,
    f.action ? sql`action like ${`${f.action.replace(/[\\%_]/g, '\\$&')}%`}` : undefined,
    f.since ? sql`created_at >= ${f.since}::timestamptz` : undefined,
    f.until ? sql`created_at < ${f.until}::timestamptz` : undefined,
    cursor ? sql`id < ${cursor}` : undefined,
  ].filter((p) => p !== undefined)
  return parts.reduce((acc, p) => sql`${acc} and ${p}`, sql`tenant_id = ${tenantId}`)
}

const LINE = `json_build_object(
  'id', id, 'action', action, 'actorUserId', actor_user_id, 'targetType', target_type, 'targetId', target_id,
  'ip', ip, 'userAgent', user_agent, 'metadata', metadata,
  'createdAt', to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text as line`

const auditLogRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const sql = fastify.host.sql as unknown as Sql

  /** `?format=jsonl` needs the plan feature: checked before validation, like config.billing's gates. */
  const exportNeedsFeature = async (req: FastifyRequest) => {
    if ((req.query as { format?: unknown } | undefined)?.format !== 'jsonl') return
    requireFeature(await fastify.entitlements.get(req.tenant!.id), AUDIT_LOG_EXPORT)
  }

  fastify.get(
    '/',
    {
      config: { access: { minRole: 'admin' } },
      preValidation: exportNeedsFeature,
      schema: {
        tags: ['audit-logs'],
        summary: 'This tenant’s audit log, newest first: JSON pages, or a JSON lines export (plan feature audit_log_export)',
        querystring: Query,
        response: {
          200: {
            description: 'A page (JSON, with nextCursor), or with ?format=jsonl every matching entry, one JSON object per line',
            content: {
              'application/json': { schema: Type.Object({ items: Type.Array(AuditEntry), nextCursor: Type.Union([Uuid, Type.Null()]) }) },
              'application/x-ndjson': { schema: Type.String({ description: 'One audit entry per line, newest first' }) },
            },
          },
          ...errorResponses(400, 401, 403, 404, 409, 503),
        },
      },
    },
    async (req, reply) => {
      const { format, limit, cursor, ...filter } = req.query
      if (filter.since && filter.until && Date.parse(filter.since) >= Date.parse(filter.until)) {
        throw badRequest('INVALID_TIME_RANGE', 'since must be before until')
      }
      const tenantId = req.tenant!.id
      if (format === 'jsonl') {
        await audit(fastify.host.db, { action: 'audit_log.exported', actorUserId: req.user!.id, tenantId, metadata: { filter } }, req)
        async function* lines() {
          // Reserved on first read: a stream destroyed before it never runs this body.
          const conn = await sql.reserve()
          try {
            await conn.unsafe(`set statement_timeout = ${EXPORT_STATEMENT_TIMEOUT_MS}`)
            const query = conn<{ line: string }[]>`select ${conn.unsafe(LINE)} from sys_audit_logs where ${whereOf(conn, tenantId, filter)} order by id desc`
            for await (const batch of query.cursor(EXPORT_BATCH)) yield batch.map((r) => `${r.line}\n`).join('')
          } finally {
            await conn.unsafe('reset statement_timeout').catch(() => {})
            conn.release()
          }
        }
        reply.header('cache-control', 'no-store')
        reply.header('content-disposition', `attachment; filename="audit-logs-${req.tenant!.slug}.jsonl"`)
        return reply.type('application/x-ndjson; charset=utf-8').send(Readable.from(lines()) as never)
      }
      const found = await sql<{ line: string }[]>`
        select ${sql.unsafe(LINE)} from sys_audit_logs where ${whereOf(sql, tenantId, filter, cursor)} order by id desc limit ${limit + 1}`
      const items = found.slice(0, limit).map((r) => JSON.parse(r.line) as Static<typeof AuditEntry>)
      return reply.type('application/json; charset=utf-8').send({ items, nextCursor: found.length > limit ? items.at(-1)!.id : null })
    },
  )
}

export default auditLogRoutes
