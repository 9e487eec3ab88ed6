/**
 * POST /api/projects/import: a JSON-lines file of projects, loaded by the `projects.import` job with
 * mapAndUpsert (src/core/data). The route only stores the upload (IMPORT_DIR, shared with the worker)
 * and queues the job; the job streams the file through the mapper in one transaction, checks the plan's
 * project limit over the whole load before it commits, and reports inserted / updated / rejected rows
 * (each rejection with its line number and field) in the job's result at /api/jobs/:id.
 *
 * Each line: { "id"?: uuid, "name": string, "description"?: string, "status"?: "active" | "archived" }.
 * A line with an id of an existing project updates it; without one, a new project is created. Other
 * fields (createdBy, timestamps) are not taken from the file.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { uuidv7 } from 'uuidv7'
import { projects } from '../../../drizzle/tenant/schema.js'
import { mapAndUpsert } from '../../core/data/map-and-upsert.js'
import { type TenantJobContext, tenantJob } from '../../core/jobs/registry.js'
import type { Config } from '../../core/config.js'
import { AppError } from '../../core/lib/errors.js'
import { errorResponses, Uuid } from '../../core/lib/schemas.js'
import { limitOf, requireStorageBelowLimit } from '../billing/index.js'

/** The fields a file may set; anything else on a line is ignored (and listed in the result). */
const IMPORTED_FIELDS = ['id', 'name', 'description', 'status'] as const
/** Rejected lines reported in the job's result (the count is exact). */
const MAX_REPORTED = 100

export const importFile = (dir: string, tenantId: string, uploadId: string) => join(dir, tenantId, `${uploadId}.ndjson`)

/** The file's lines as rows; a line that is not JSON becomes an Error, which the mapper reports with its line number. */
async function* linesOf(path: string): AsyncGenerator<Record<string, unknown>> {
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY })
  for await (const line of lines) {
    if (line.trim() === '') continue
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      yield new Error('not valid JSON') as never
      continue
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      yield value as never // rejected by the mapper as "not an object"
      continue
    }
    const row: Record<string, unknown> = {}
    for (const field of IMPORTED_FIELDS) if (field in value) row[field] = (value as Record<string, unknown>)[field]
    yield row
  }
}

export interface ProjectsImportDeps {
  config: Pick<Config, 'imports'>
}

export const projectsImport = tenantJob({
  payload: {
    uploadId: Uuid,
    /** Who uploaded it: the new projects' createdBy. */
    userId: Uuid,
    /** The plan's project limit when the upload was accepted (null: none). */
    maxProjects: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  },
  maxRetries: 2,
  // Over the plan's limit, a retry finds the same file and the same limit.
  permanent: (err) => err instanceof AppError && err.code === 'LIMIT_REACHED',
  async process(ctx: TenantJobContext<ProjectsImportDeps>, payload) {
    const path = importFile(ctx.deps.config.imports.dir, ctx.tenant.id, payload.uploadId)
    try {
      const result = await mapAndUpsert(ctx.db, {
        rows: linesOf(path),
        table: projects,
        key: projects.id,
        columns: IMPORTED_FIELDS,
        defaults: { createdBy: payload.userId },
        maxRejectedDetails: MAX_REPORTED,
        async beforeCommit(tx) {
          if (payload.maxProjects === null) return
          const [row] = await tx<{ n: number }[]>`select count(*)::int as n from projects`
          if (row!.n > payload.maxProjects) {
            throw new AppError(403, 'LIMIT_REACHED', `Your plan allows ${payload.maxProjects} projects; this import would make ${row!.n}. Nothing was imported`, {
              limit: payload.maxProjects,
              resource: 'projects',
            })
          }
        },
      })
      await rm(path, { force: true })
      return result
    } catch (err) {
      if (err instanceof AppError && err.code === 'LIMIT_REACHED') await rm(path, { force: true })
      throw err
    }
  },
})

/** The upload, written to IMPORT_DIR as it arrives, refused past IMPORT_MAX_BYTES (the partial file removed). */
async function storeUpload(body: NodeJS.ReadableStream, path: string, maxBytes: number): Promise<number> {
  let bytes = 0
  const limit = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length
      if (bytes > maxBytes) done(new AppError(413, 'BODY_TOO_LARGE', `The import file is over ${maxBytes} bytes (IMPORT_MAX_BYTES)`))
      else done(null, chunk)
    },
  })
  try {
    await pipeline(body, limit, createWriteStream(path, { flags: 'wx' }))
    return bytes
  } catch (err) {
    await rm(path, { force: true })
    throw err
  }
}

const ImportAccepted = Type.Object({ id: Uuid, jobType: Type.Literal('projects.import'), bytes: Type.Integer() })

const importRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { dir, maxBytes } = fastify.services.config.imports
  // The file arrives as a stream (this encapsulated context only): never buffered whole, never parsed here.
  fastify.addContentTypeParser('application/x-ndjson', (_req, payload, done) => done(null, payload))

  fastify.post(
    '/import',
    {
      config: { access: { minRole: 'editor', resource: 'projects', action: 'edit' }, requestDeadline: false },
      schema: {
        tags: ['projects'],
        summary: 'Import projects from a JSON-lines file (the projects.import job; follow it at /api/jobs/:id)',
        description:
          'Body: `application/x-ndjson`, one project per line: `{"id"?, "name", "description"?, "status"?}`. A line with the id of an existing project updates it. Loaded in one transaction by the job: all of it or, over the plan’s project limit, none (LIMIT_REACHED in the job’s error). 403 LIMIT_REACHED (resource storageMb) at once when the tenant already stores as much as its plan allows. The job’s result counts inserted, updated and rejected lines, each rejection with its line number and field.',
        consumes: ['application/x-ndjson'],
        // Documents the body; validates nothing (a stream, written to disk and read by the job).
        body: Type.Unknown({ description: 'JSON lines: one project object per line' }),
        response: { 202: ImportAccepted, ...errorResponses(400, 401, 403, 404, 413, 415, 503) },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const uploadId = uuidv7()
      const path = importFile(dir, tenantId, uploadId)
      const entitlements = await fastify.entitlements.get(tenantId)
      // A tenant already at its plan's storage gets 403 LIMIT_REACHED before its upload is stored.
      await requireStorageBelowLimit(entitlements, req.tenant!, req.tenantDb)
      await mkdir(join(dir, tenantId), { recursive: true })
      const bytes = await storeUpload(req.body as NodeJS.ReadableStream, path, maxBytes)
      try {
        const job = await fastify.services.tasks.submit('projects.import', { tenantId, uploadId, userId: req.user!.id, maxProjects: limitOf(entitlements, 'projects') })
        return reply.code(202).send({ id: job.id, jobType: 'projects.import' as const, bytes })
      } catch (err) {
        await rm(path, { force: true })
        throw err
      }
    },
  )
}

export default importRoutes
