/**
 * /api/tenant/export — an owner takes their tenant with them (jobs.ts builds the archive: pg_dump of the
 * tenant's database + its host rows, one .tar.gz). Owners only (admins and members 403 INSUFFICIENT_ROLE),
 * people only (403 API_KEY_NOT_ALLOWED: a whole database is not for a script's key). A suspended tenant's owner
 * may still export it: suspension stops the service, not the owner's right to take their data.
 *
 *   POST /                 202 { id, status }: queues `tenants.export` (409 EXPORT_IN_PROGRESS while one made in the
 *                          last hour is pending or running)
 *   GET  /:id              its status: pending → running → ready (→ downloaded | expired) or failed
 *   GET  /:id/download     the archive, streamed ONCE: the row is claimed atomically (a second download, or one
 *                          after 24 h, is 410 EXPORT_GONE; before it is ready 409 EXPORT_NOT_READY) and the file
 *                          is deleted when the stream closes, whether or not the client read it all.
 * Another tenant's export id is 404 EXPORT_NOT_FOUND (no existence leak). Request and download are audited.
 */
import { createReadStream } from 'node:fs'
import { access, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { and, desc, eq, gt, inArray, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { type TenantExport, tenantExports } from '../../../../drizzle/host/schema.js'
import type { AppOptions } from '../../../core/config.js'
import { audit } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { AppError, forbidden, notFound } from '../../../core/lib/errors.js'
import { errorResponses, IdParams, Uuid } from '../../../core/lib/schemas.js'
import { archiveName, EXPORT_TTL_MS } from './jobs.js'

const DateOrNull = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
const ExportStatus = Type.Union([
  Type.Literal('pending'),
  Type.Literal('running'),
  Type.Literal('ready'),
  Type.Literal('failed'),
  Type.Literal('downloaded'),
  Type.Literal('expired'),
])
const ExportSchema = Type.Object({
  id: Uuid,
  status: ExportStatus,
  sizeBytes: Type.Union([Type.Integer(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  readyAt: DateOrNull,
  downloadedAt: DateOrNull,
  expiresAt: Type.String({ format: 'date-time', description: 'when a ready archive nobody downloaded is deleted' }),
})
const tags = ['tenants']
const errors = errorResponses(400, 401, 403, 404, 409, 503)
const access_ = { minRole: 'admin' as const }

const view = (e: TenantExport) => ({
  id: e.id,
  status: e.status,
  sizeBytes: e.sizeBytes,
  error: e.error,
  createdAt: e.createdAt.toISOString(),
  readyAt: iso(e.readyAt),
  downloadedAt: iso(e.downloadedAt),
  expiresAt: e.expiresAt.toISOString(),
})

const ownersOnly = () => forbidden('INSUFFICIENT_ROLE', 'Only an owner can export the tenant', { requiredRole: 'owner' })
const notFoundExport = () => notFound('EXPORT_NOT_FOUND', 'No such export in this tenant')
const gone = () => new AppError(410, 'EXPORT_GONE', 'This export was already downloaded or has expired; request a new one')

const tenantExportRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const db = fastify.host.db
  // After the tenant guard (a parent scope's hook), before validation: owner is a membership role, not a level.
  fastify.addHook('preValidation', async (req) => {
    if (req.membership?.role !== 'owner') throw ownersOnly()
  })
  const find = async (tenantId: string, id: string) => {
    const [row] = await db.select().from(tenantExports).where(and(eq(tenantExports.id, id), eq(tenantExports.tenantId, tenantId)))
    if (!row) throw notFoundExport()
    return row
  }

  fastify.post(
    '/',
    {
      config: { access: access_, sessionOnly: true, allowSuspended: true },
      schema: {
        tags,
        summary: 'Export the tenant (owners): a pg_dump of its database and its host rows, as one .tar.gz to download once',
        description: '202 with the export to follow at GET /api/tenant/export/:id; 409 EXPORT_IN_PROGRESS while another is pending or running.',
        response: { 202: ExportSchema, ...errors },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const [busy] = await db
        .select({ id: tenantExports.id })
        .from(tenantExports)
        // An export stuck for an hour (its worker died for good) no longer blocks the next one.
        .where(
          and(
            eq(tenantExports.tenantId, tenantId),
            inArray(tenantExports.status, ['pending', 'running']),
            gt(tenantExports.createdAt, sql`now() - interval '1 hour'`),
          ),
        )
      if (busy) throw new AppError(409, 'EXPORT_IN_PROGRESS', 'An export of this tenant is already being made', { exportId: busy.id })
      const [row] = await db
        .insert(tenantExports)
        .values({ tenantId, requestedBy: req.user!.id, expiresAt: new Date(Date.now() + EXPORT_TTL_MS) })
        .returning()
      try {
        await fastify.services.tasks.submit('tenants.export', { exportId: row!.id, tenantId })
      } catch (err) {
        // Not queued: the row must not block the next request as "in progress".
        await db.update(tenantExports).set({ status: 'failed', error: 'could not be queued' }).where(eq(tenantExports.id, row!.id))
        throw err
      }
      await audit(db, { action: 'tenant.export_requested', actorUserId: req.user!.id, tenantId, targetType: 'tenant_export', targetId: row!.id }, req)
      return reply.code(202).send(view(row!))
    },
  )

  fastify.get(
    '/:id',
    {
      config: { access: access_, sessionOnly: true, allowSuspended: true },
      schema: { tags, summary: 'An export’s status (owners)', params: IdParams, response: { 200: ExportSchema, ...errors } },
    },
    async (req) => view(await find(req.tenant!.id, req.params.id)),
  )

  fastify.get(
    '/:id/download',
    {
      config: { access: access_, sessionOnly: true, allowSuspended: true, requestDeadline: false },
      schema: {
        tags,
        summary: 'Download an export, once (owners): the file is deleted after it; again is 410 EXPORT_GONE',
        params: IdParams,
        response: {
          200: { description: 'The archive', content: { 'application/gzip': { schema: Type.String({ format: 'binary' }) } } },
          ...errors,
          ...errorResponses(410),
        },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const { id } = req.params
      // One download: whoever flips ready → downloaded streams it; everyone after gets 410.
      const [claimed] = await db
        .update(tenantExports)
        .set({ status: 'downloaded', downloadedAt: sql`now()`, fileName: null })
        .where(and(eq(tenantExports.id, id), eq(tenantExports.tenantId, tenantId), eq(tenantExports.status, 'ready'), gt(tenantExports.expiresAt, sql`now()`)))
        .returning()
      if (!claimed) {
        const row = await find(tenantId, id)
        if (row.status === 'pending' || row.status === 'running') throw new AppError(409, 'EXPORT_NOT_READY', 'This export is not ready yet', { status: row.status })
        if (row.status === 'failed') throw new AppError(409, 'EXPORT_FAILED', 'This export failed; request a new one', { error: row.error })
        throw gone()
      }
      const path = join(config.exportDir, archiveName(id))
      if (!(await access(path).then(() => true, () => false))) throw gone()
      await audit(db, { action: 'tenant.export_downloaded', actorUserId: req.user!.id, tenantId, targetType: 'tenant_export', targetId: id, metadata: { sizeBytes: claimed.sizeBytes } }, req)
      const stream = createReadStream(path)
      stream.once('close', () => {
        rm(path, { force: true }).catch((err) => req.log.warn({ err, exportId: id }, 'deleting a downloaded export failed (the hourly purge retries)'))
      })
      const day = claimed.createdAt.toISOString().slice(0, 10)
      reply.header('content-disposition', `attachment; filename="${req.tenant!.slug}-export-${day}.tar.gz"`)
      reply.header('cache-control', 'no-store')
      if (claimed.sizeBytes !== null) reply.header('content-length', claimed.sizeBytes)
      return reply.type('application/gzip').send(stream as never)
    },
  )

  fastify.get(
    '/',
    {
      config: { access: access_, sessionOnly: true, allowSuspended: true },
      schema: { tags, summary: 'The tenant’s recent exports, newest first (owners)', response: { 200: Type.Object({ items: Type.Array(ExportSchema) }), ...errors } },
    },
    async (req) => {
      const rows = await db.select().from(tenantExports).where(eq(tenantExports.tenantId, req.tenant!.id)).orderBy(desc(tenantExports.id)).limit(20)
      return { items: rows.map(view) }
    },
  )
}

export default tenantExportRoutes
