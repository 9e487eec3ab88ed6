/**
 * /api/projects — the example tenant resource. Viewers read, editors write, admins delete; the guard
 * in routes/api has already resolved the tenant, checked membership and the route's `access` rule,
 * so handlers only talk to `req.tenantDb`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { Project } from '../../../drizzle/tenant/schema.js'
import { notFound } from '../../core/lib/errors.js'
import { IdParams, errorResponses, Uuid } from '../../core/lib/schemas.js'
import { requireBelowLimit, requireStorageBelowLimit } from '../billing/index.js'
import { createProjectsRepository } from './repository.js'
import { CreateProjectBody, ListProjectsQuery, ProjectPageSchema, ProjectSchema, UpdateProjectBody } from './schemas.js'
import exportRoutes from './export.js'
import importRoutes from './import.js'
import './events.js'

const toJson = (p: Project) => ({ ...p, createdAt: p.createdAt.toISOString(), updatedAt: p.updatedAt.toISOString() })
const missing = () => notFound('PROJECT_NOT_FOUND', 'No such project')
const guarded = errorResponses(400, 401, 403, 404, 409, 503)
const tags = ['projects']

const projectRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  // GET /export: the billing-gated example (subscription + the plan's `exports` feature).
  await fastify.register(exportRoutes)
  // POST /import: a JSON-lines upload loaded by the projects.import job (core/data's mapAndUpsert).
  await fastify.register(importRoutes)

  fastify.get(
    '/',
    {
      config: { access: { minRole: 'viewer', resource: 'projects', action: 'view' } },
      schema: { tags, summary: 'List projects, newest first (cursor pagination)', querystring: ListProjectsQuery, response: { 200: ProjectPageSchema, ...guarded } },
    },
    async (req) => {
      const page = await createProjectsRepository(req.tenantDb).list(req.query)
      return { items: page.items.map(toJson), nextCursor: page.nextCursor }
    },
  )

  // The feature's own job, submitted from a route and run by the worker (README "Extending", recipe b).
  fastify.post(
    '/recount',
    {
      config: { access: { minRole: 'editor', resource: 'projects', action: 'edit' } },
      schema: {
        tags,
        summary: 'Recount this tenant’s projects in the background (the projects.recount job); follow it at /api/jobs/:id',
        response: { 202: Type.Object({ id: Uuid, jobType: Type.Literal('projects.recount') }), ...guarded },
      },
    },
    async (req, reply) => {
      const job = await fastify.services.tasks.submit('projects.recount', { tenantId: req.tenant!.id })
      return reply.code(202).send({ id: job.id, jobType: 'projects.recount' as const })
    },
  )

  fastify.post(
    '/',
    {
      config: { access: { minRole: 'editor', resource: 'projects', action: 'edit' } },
      schema: {
        tags,
        summary: 'Create a project',
        description:
          '403 LIMIT_REACHED (details.limit, details.resource) when the tenant has as many projects as its plan allows, or stores as many MB (resource storageMb, details.usedMb).',
        body: CreateProjectBody,
        response: { 201: ProjectSchema, ...guarded },
      },
    },
    async (req, reply) => {
      const projects = createProjectsRepository(req.tenantDb)
      const plan = await fastify.entitlements.get(req.tenant!.id)
      await requireBelowLimit(plan, 'projects', () => projects.count())
      // Creating is where the example resource grows; updates stay open, so a tenant over its storage can still trim.
      await requireStorageBelowLimit(plan, req.tenant!, req.tenantDb)
      const project = toJson(await projects.create({ ...req.body, createdBy: req.user!.id }))
      await fastify.services.events.publish(req.tenant!.id, 'project.created', { project })
      return reply.code(201).send(project)
    },
  )

  fastify.get(
    '/:id',
    {
      config: { access: { minRole: 'viewer', resource: 'projects', action: 'view' } },
      schema: { tags, summary: 'Read a project', params: IdParams, response: { 200: ProjectSchema, ...guarded } },
    },
    async (req) => {
      const project = await createProjectsRepository(req.tenantDb).findById(req.params.id)
      if (!project) throw missing()
      return toJson(project)
    },
  )

  fastify.patch(
    '/:id',
    {
      config: { access: { minRole: 'editor', resource: 'projects', action: 'edit' } },
      schema: { tags, summary: 'Update a project', params: IdParams, body: UpdateProjectBody, response: { 200: ProjectSchema, ...guarded } },
    },
    async (req) => {
      const updated = await createProjectsRepository(req.tenantDb).update(req.params.id, req.body)
      if (!updated) throw missing()
      const project = toJson(updated)
      await fastify.services.events.publish(req.tenant!.id, 'project.updated', { project })
      return project
    },
  )

  fastify.delete(
    '/:id',
    {
      config: { access: { minRole: 'admin', resource: 'projects', action: 'delete' } },
      schema: { tags, summary: 'Delete a project', params: IdParams, response: { 204: Type.Null(), ...guarded } },
    },
    async (req, reply) => {
      if (!(await createProjectsRepository(req.tenantDb).remove(req.params.id))) throw missing()
      await fastify.services.events.publish(req.tenant!.id, 'project.deleted', { project: { id: req.params.id } })
      return reply.code(204).send(null)
    },
  )
}

export default projectRoutes
