/**
 * /admin/api/servers — the database servers tenants live on (core_db_servers), for platform admins
 * (guard.ts); the same implementation as `npm run tenants -- servers …` (src/core/tenancy/server-admin.ts,
 * move/drain-server.ts). No URL or credential of a server ever leaves: its host:port only.
 *
 *   GET    /              every server: role, status, capacity, what it holds, this process' pool budget and use, whether it answers
 *   POST   /:name/drain   no new tenants there; each of its tenants gets a move to the server placement picks,
 *                         queued as a `tenants.move` job (202; `servers drain` without --inline)
 *   POST   /:name/activate  takes new tenants again
 *   PUT    /:name/pooler  its database tenants connect through that pooler (PgBouncer), or directly again (url null)
 *   DELETE /:name         removes a draining server that holds nothing (409 SERVER_NOT_DRAINING / SERVER_NOT_EMPTY /
 *                         SERVER_NOT_REMOVABLE otherwise), dropping the shared database the kit created there
 *
 * Writes are audited with the admin, ip and user agent (admin.server_drained, admin.server_activated, admin.server_pooler_set,
 * admin.server_removed).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { audit } from '../../../core/lib/audit.js'
import { errorResponses, Uuid } from '../../../core/lib/schemas.js'
import { drainServer } from '../../../core/tenancy/move/drain-server.js'
import { describeServers, removeServer, serverAdminDeps, setServerPooler } from '../../../core/tenancy/server-admin.js'
import { DateTime, tags } from './schemas.js'

const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$', description: 'The server name (core_db_servers.name)' }) })
const Role = Type.Union([Type.Literal('dedicated'), Type.Literal('shared')])
const Status = Type.Union([Type.Literal('active'), Type.Literal('draining')])
const Count = Type.Integer({ minimum: 0 })

const Server = Type.Object({
  name: Type.String(),
  role: Role,
  status: Status,
  capacity: Type.Union([Count, Type.Null()], { description: 'Most tenant databases placement puts there; null: no limit' }),
  host: Type.String({ description: 'host:port (never the URL or its credentials)' }),
  sharedDatabase: Type.Union([Type.String(), Type.Null()], { description: 'The name of its shared database; null: none there' }),
  pooler: Type.Union([Type.String(), Type.Null()], { description: 'host:port of the pooler its database tenants connect through; null: directly' }),
  tenants: Type.Object(
    {
      databases: Type.Integer({ minimum: 0, description: 'Tenant databases there (soft-deleted tenants included: their databases are kept)' }),
      shared: Type.Integer({ minimum: 0, description: 'Shared tenants in its shared database (soft-deleted included)' }),
      deleted: Type.Integer({ minimum: 0, description: 'Of those, soft-deleted' }),
      moving: Type.Integer({ minimum: 0, description: 'Moves in flight from or to it' }),
    },
    { description: 'From the catalog' },
  ),
  pool: Type.Object(
    {
      budget: Count,
      reserved: Count,
      inUse: Type.Integer({ minimum: 0, description: 'Connections leased now' }),
      openPools: Count,
      waiters: Count,
    },
    { description: "The answering process' tenant pools there: its connection budget, the slots reserved and the leases held now" },
  ),
  reachable: Type.Union([Type.Boolean(), Type.Null()], { description: 'It answered `select 1` within 1.5 s; null when not probed (probe=false)' }),
  createdAt: DateTime,
})

const ServerList = Type.Object({ items: Type.Array(Server) })

const DrainAccepted = Type.Object(
  {
    name: Type.String(),
    status: Type.Literal('draining'),
    moves: Type.Array(Type.Object({ slug: Type.String(), to: Type.String(), moveId: Uuid, jobId: Type.Union([Uuid, Type.Null()]) }), {
      description: 'One queued tenants.move job per tenant: follow each at GET /admin/api/jobs/{jobId}',
    }),
    skipped: Type.Array(Type.Object({ slug: Type.String(), reason: Type.String() }), { description: 'Tenants left there, and why' }),
  },
  { description: 'Draining: no new tenants go there, and its tenants are queued to move. Once they have, DELETE removes it' },
)

const StatusChanged = Type.Object({ name: Type.String(), status: Status })
const PoolerBody = Type.Object(
  {
    url: Type.Union(
      [Type.String({ minLength: 1, maxLength: 2048, description: 'postgres://host:port[?params]: no role, password or database (each tenant connects as itself)' }), Type.Null()],
      { description: 'null: connect directly again' },
    ),
  },
  { additionalProperties: false },
)
const PoolerSet = Type.Object({ name: Type.String(), pooler: Type.Union([Type.String(), Type.Null()], { description: 'host:port; null: directly' }) })

const Removed = Type.Object({
  name: Type.String(),
  removed: Type.Literal(true),
  sharedDatabase: Type.Union(
    [Type.Object({ name: Type.String(), dropped: Type.Boolean(), reason: Type.Optional(Type.String()) }), Type.Null()],
    { description: 'Its shared database: dropped, or kept and why (not created by the kit, used elsewhere, gone); null: it held none' },
  ),
  templates: Type.Object(
    { dropped: Type.Array(Type.String()), kept: Type.Array(Type.String()), reason: Type.Optional(Type.String()) },
    { description: "This deployment's tenant templates there: dropped, or kept and why (another server or the host database is on the same Postgres)" },
  ),
})

const serverAdminRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const services = fastify.services
  const deps = serverAdminDeps(services)

  const audited = (req: FastifyRequest, action: string, name: string, metadata: Record<string, unknown>) =>
    audit(fastify.host.db, { action, actorUserId: req.user!.id, targetType: 'db_server', targetId: name, metadata }, req)

  fastify.get(
    '/',
    {
      schema: {
        tags,
        summary: 'The database servers: role, status, capacity, tenants, pool budget and use, whether each answers',
        querystring: Type.Object(
          { probe: Type.Boolean({ default: true, description: 'Ask each server `select 1` (up to 1.5 s for one that is down)' }) },
          { additionalProperties: false },
        ),
        response: { 200: ServerList, ...errorResponses(400) },
      },
    },
    async (req) => {
      const items = await describeServers(deps, { probe: req.query.probe })
      return { items: items.map((s) => ({ ...s, createdAt: s.createdAt.toISOString() })) }
    },
  )

  fastify.post(
    '/:name/drain',
    {
      schema: {
        tags,
        summary: 'Drain a server: no new tenants there, and a queued tenants.move job for each of its tenants',
        description: 'Asking again queues only what is left (a tenant with its move open keeps it).',
        params: NameParams,
        response: { 202: DrainAccepted, ...errorResponses(400, 404, 503) },
      },
    },
    async (req, reply) => {
      const { name } = req.params
      const result = await drainServer({ host: services.host, provisioner: services.provisioner, mover: services.mover }, name)
      const moves = result.moved.map((m) => ({ slug: m.slug, to: m.to, moveId: m.moveId, jobId: m.jobId ?? null }))
      await audited(req, 'admin.server_drained', name, { moves: moves.length, skipped: result.skipped.length })
      return reply.code(202).send({ name, status: 'draining' as const, moves, skipped: result.skipped })
    },
  )

  fastify.post(
    '/:name/activate',
    {
      schema: {
        tags,
        summary: 'Activate a server: placement puts new tenants there again',
        params: NameParams,
        response: { 200: StatusChanged, ...errorResponses(400, 404) },
      },
    },
    async (req) => {
      const { name } = req.params
      await services.provisioner.servers.setStatus(name, 'active')
      await audited(req, 'admin.server_activated', name, {})
      return { name, status: 'active' as const }
    },
  )

  fastify.put(
    '/:name/pooler',
    {
      schema: {
        tags,
        summary: 'Put a pooler (PgBouncer, transaction pooling) in front of a server’s database tenants, or take it away',
        description:
          'Each database tenant on the server then connects through it with its own role, password and database (the pooler must accept them: ' +
          'a `*` database entry and auth_query or an auth_file). Every process drops its catalog entries and pools there, so the next request takes the new route. ' +
          'Shared tenants keep connecting directly (one pool per process already bounds them). 400 INVALID_SERVER when the URL is malformed or nothing accepts a connection there.',
        params: NameParams,
        body: PoolerBody,
        response: { 200: PoolerSet, ...errorResponses(400, 404) },
      },
    },
    async (req) => {
      const { name } = req.params
      const set = await setServerPooler(deps, name, req.body.url)
      await audited(req, 'admin.server_pooler_set', name, { pooler: set.pooler })
      return set
    },
  )

  fastify.delete(
    '/:name',
    {
      schema: {
        tags,
        summary: 'Remove a drained server that holds nothing; the shared database and the templates the kit created there are dropped',
        description:
          '409 SERVER_NOT_DRAINING (drain it first), 409 SERVER_NOT_EMPTY (tenants, soft-deleted ones included, moves in flight or rows ' +
          'in its shared database: `holds` says which), 409 SERVER_NOT_REMOVABLE (the default server), 503 SERVER_UNREACHABLE (its shared database could not be checked).',
        params: NameParams,
        response: { 200: Removed, ...errorResponses(400, 404, 409, 503) },
      },
    },
    async (req) => {
      const { name } = req.params
      const removed = await removeServer(deps, name)
      await audited(req, 'admin.server_removed', name, { sharedDatabase: removed.sharedDatabase, templates: removed.templates })
      return { name, removed: true as const, sharedDatabase: removed.sharedDatabase, templates: removed.templates }
    },
  )
}

export default serverAdminRoutes
