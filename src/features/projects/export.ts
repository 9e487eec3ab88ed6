/**
 * GET /api/projects/export — the example of a route gated by billing; copy its `config` for your own:
 *   access:  any member of the tenant (viewer and up), as for reading projects;
 *   billing: a subscription that counts (402 SUBSCRIPTION_REQUIRED) on a plan with the `exports`
 *            feature (403 FEATURE_NOT_IN_PLAN, naming the feature and the plan).
 * Streams every project of the tenant, oldest first, as CSV (default) or JSON lines (?format=jsonl).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Project } from '../../../drizzle/tenant/schema.js'
import { errorResponses } from '../../core/lib/schemas.js'
import { createProjectsRepository } from './repository.js'

const COLUMNS = ['id', 'name', 'description', 'status', 'createdBy', 'createdAt', 'updatedAt'] as const
const PAGE = 500

/** One CSV field (RFC 4180 quoting). A leading = + - @ is defused so a spreadsheet never runs it as a formula. */
export function csvField(value: string | null): string {
  if (value === null) return ''
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe
}

const plain = (p: Project) => ({ ...p, createdAt: p.createdAt.toISOString(), updatedAt: p.updatedAt.toISOString() })
const csvLine = (p: Project) => `${COLUMNS.map((c) => csvField(plain(p)[c])).join(',')}\r\n`
const jsonLine = (p: Project) => `${JSON.stringify(plain(p))}\n`

const exportRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/export',
    {
      config: {
        access: { minRole: 'viewer', resource: 'projects', action: 'view' },
        billing: { subscription: true, feature: 'exports' },
      },
      schema: {
        tags: ['projects'],
        summary: 'Export every project as CSV or JSON lines (needs a plan with the "exports" feature)',
        querystring: Type.Object(
          { format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('jsonl')])) },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'Every project, oldest first: CSV with a header row (default), or JSON lines with ?format=jsonl',
            content: {
              'text/csv': { schema: Type.String({ description: 'RFC 4180, columns id,name,description,status,createdBy,createdAt,updatedAt' }) },
              'application/x-ndjson': { schema: Type.String({ description: 'One project object per line' }) },
            },
          },
          ...errorResponses(400, 401, 402, 403, 404, 503),
        },
      },
    },
    async (req, reply) => {
      const format = req.query.format ?? 'csv'
      const repo = createProjectsRepository(req.tenantDb)
      // Newest-first pages walked to the end, then reversed: a file reads in creation order.
      const rows: Project[] = []
      let cursor: string | undefined
      do {
        const page = await repo.list({ limit: PAGE, cursor })
        rows.push(...page.items)
        cursor = page.nextCursor ?? undefined
      } while (cursor)
      rows.reverse()
      const slug = req.tenant!.slug
      reply.header('content-disposition', `attachment; filename="projects-${slug}.${format === 'csv' ? 'csv' : 'jsonl'}"`)
      reply.header('cache-control', 'no-store')
      if (format === 'jsonl') return reply.type('application/x-ndjson; charset=utf-8').send(rows.map(jsonLine).join(''))
      return reply.type('text/csv; charset=utf-8').send(`${COLUMNS.join(',')}\r\n${rows.map(csvLine).join('')}`)
    },
  )
}

export default exportRoutes
