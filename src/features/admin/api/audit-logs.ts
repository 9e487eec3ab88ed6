/**
 * /admin/api/audit-logs — the platform's audit log (sys_audit_logs), for platform admins (guard.ts):
 * filtered by tenant, actor, action prefix (`tenant.` → every tenant.* action) and time range
 * [since, until), newest first.
 *
 * JSON (default): pages of `limit` with an id cursor (ids are UUIDv7, so id order is time order).
 * `?format=jsonl`: every matching entry, streamed as JSON lines (application/x-ndjson) from a postgres.js
 * cursor, a batch at a time with backpressure: memory stays flat however many rows match (each line is
 * built by Postgres, so nothing is parsed and re-serialised here). The export itself is audited.
 */
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type Static, Type } from 'typebox'
import type { Sql } from '../../../core/db/connect.js'
import { audit } from '../../../core/lib/audit.js'
import { badRequest } from '../../../core/lib/errors.js'
import { errorResponses, Text, Uuid } from '../../../core/lib/schemas.js'
import { Cursor, DateTime, Limit, StringOrNull, tags } from './schemas.js'

const AuditEntry = Type.Object({
  id: Uuid,
  action: Type.String(),
  actorUserId: Type.Union([Uuid, Type.Null()]),
  actorApiKeyId: Type.Union([Uuid, Type.Null()], { description: 'The platform API key (tka_…) the actor used, if any' }),
  tenantId: Type.Union([Uuid, Type.Null()]),
  targetType: StringOrNull,
  targetId: StringOrNull,
  ip: StringOrNull,
  userAgent: StringOrNull,
  metadata: Type.Record(Type.String(), Type.Unknown()),
  createdAt: DateTime,
})

const Query = Type.Object(
  {
    tenantId: Type.Optional(Uuid),
    actorUserId: Type.Optional(Uuid),
    actorApiKeyId: Type.Optional(Uuid),
    action: Type.Optional(Text({ minLength: 1, maxLength: 100, description: 'Action prefix: `tenant.` matches tenant.suspended, tenant.deleted…' })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'From this instant (inclusive)' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'Before this instant (exclusive)' })),
    format: Type.Union([Type.Literal('json'), Type.Literal('jsonl')], { default: 'json' }),
    limit: Limit,
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
)

/** Rows a JSONL export fetches per round trip. */
const EXPORT_BATCH = 1000
/**
 * The export's cursor is one statement for as long as the client reads: a slow reader or a million rows
 * outlast DB_STATEMENT_TIMEOUT_MS (30 s), which would cut the download short. Its own connection gets
 * this bound instead, and the pool's setting back before it is released.
 */
const EXPORT_STATEMENT_TIMEOUT_MS = 30 * 60_000

interface Filter {
  tenantId?: string | undefined
  actorUserId?: string | undefined
  actorApiKeyId?: string | undefined
  action?: string | undefined
  since?: string | undefined
  until?: string | undefined
}

/** The WHERE clause as a postgres.js fragment (raw client: the export needs its cursor). */
function whereOf(sql: Sql, f: Filter, cursor?: string) {
  const parts = [
    f.tenantId ? sql`tenant_id = ${f.tenantId}` : undefined,
    f.actorUserId ? sql`actor_user_id = ${f.actorUserId}` : undefined,
    f.actorApiKeyId ? sql`actor_api_key_id = ${f.actorApiKeyId}` : undefined,
    f.action ? sql`action like ${`${f.action.replace(/[\\%_]/g, '\\$&')}%`}` : undefined,
    f.since ? sql`created_at >= ${f.since}::timestamptz` : undefined,
    f.until ? sql`created_at < ${f.until}::timestamptz` : undefined,
    cursor ? sql`id < ${cursor}` : undefined,
  ].filter((p) => p !== undefined)
  return parts.reduce((acc, p) => sql`${acc} and ${p}`, sql`true`)
}

// One JSON object per row, built by Postgres: the same shape as the JSON pages.
const LINE = `json_build_object(
  'id', id, 'action', action, 'actorUserId', actor_user_id, 'actorApiKeyId', actor_api_key_id, 'tenantId', tenant_id, 'targetType', target_type,
  'targetId', target_id, 'ip', ip, 'userAgent', user_agent, 'metadata', metadata,
  'createdAt', to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text as line`

const auditLogRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const sql = fastify.host.sql as unknown as Sql

  fastify.get(
    '/',
    {
      schema: {
        tags,
        summary: 'The audit log, newest first: by tenant, actor, action prefix and time range; JSON pages or a JSON lines export',
        querystring: Query,
        response: {
          200: {
            description: 'A page (JSON, with nextCursor), or with ?format=jsonl every matching entry, one JSON object per line',
            content: {
              'application/json': {
                schema: Type.Object({ items: Type.Array(AuditEntry), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
              },
              'application/x-ndjson': { schema: Type.String({ description: 'One audit entry per line, newest first' }) },
            },
          },
          ...errorResponses(400),
        },
      },
    },
    async (req, reply) => {
      const { format, limit, cursor, ...filter } = req.query
      if (filter.since && filter.until && Date.parse(filter.since) >= Date.parse(filter.until)) {
        throw badRequest('INVALID_TIME_RANGE', 'since must be before until')
      }
      if (format === 'jsonl') {
        await audit(fastify.host.db, { action: 'admin.audit_logs_exported', actorUserId: req.user!.id, metadata: { filter } }, req)
        async function* lines() {
          // Reserved here, not before: a stream destroyed before its first read never runs this body (nor a finally).
          const conn = await sql.reserve()
          try {
            await conn.unsafe(`set statement_timeout = ${EXPORT_STATEMENT_TIMEOUT_MS}`)
            const query = conn<{ line: string }[]>`select ${conn.unsafe(LINE)} from sys_audit_logs where ${whereOf(conn, filter)} order by id desc`
            for await (const batch of query.cursor(EXPORT_BATCH)) yield batch.map((r) => `${r.line}\n`).join('')
          } finally {
            // A client that left mid-export ends here too (the stream returns the generator).
            await conn.unsafe('reset statement_timeout').catch(() => {})
            conn.release()
          }
        }
        reply.header('cache-control', 'no-store')
        reply.header('content-disposition', 'attachment; filename="audit-logs.jsonl"')
        return reply.type('application/x-ndjson; charset=utf-8').send(Readable.from(lines()) as never)
      }
      const found = await sql<{ line: string }[]>`
        select ${sql.unsafe(LINE)} from sys_audit_logs where ${whereOf(sql, filter, cursor)} order by id desc limit ${limit + 1}`
      const items = found.slice(0, limit).map((r) => JSON.parse(r.line) as Static<typeof AuditEntry>)
      return reply.type('application/json; charset=utf-8').send({ items, nextCursor: found.length > limit ? items.at(-1)!.id : null })
    },
  )
}

export default auditLogRoutes
