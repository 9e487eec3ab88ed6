/**
 * Tenancy for the request plane. Decorates the app with the tenancy services and gives routes one
 * guard, `fastify.tenantGuard`, that a whole route scope installs (routes/api does): it resolves the
 * tenant (header → path → subdomain → session), checks the caller's membership in the host DB on
 * every request, refuses suspended or unready tenants, computes the effective role from the
 * databases, enforces the route's declared minimum role / permission, and leases the tenant's pool
 * for the request. Handlers then read `req.tenant`, `req.role` and `req.tenantDb`, never a global.
 * When every lookup is cached and the pool is open, the guard decides synchronously (no promise per request,
 * issue 14); otherwise it takes the async way, which reads and waits as needed. Both decide the same.
 *
 * Status codes (no existence leak: an unknown tenant and a tenant you're not in look the same):
 *   401 UNAUTHENTICATED · 400 TENANT_REQUIRED · 404 TENANT_NOT_FOUND · 403 TENANT_SUSPENDED ·
 *   409 TENANT_NOT_READY · 403 INSUFFICIENT_ROLE · 503 TENANT_MOVING (a write while the tenant moves; Retry-After)
 *
 * An API key (`Authorization: Bearer tk_…`, see src/core/identity/api-keys.ts) is the other way in, and the
 * only one for that request (its cookie is ignored). The key names its own tenant: a header, path or
 * subdomain naming another one is 404 TENANT_NOT_FOUND, and nothing named means the key's tenant (the
 * session's active tenant plays no part). It acts as its creator, who must still be an active member
 * of that tenant: otherwise the key no longer authenticates anyone, 401 INVALID_API_KEY (like a
 * revoked, expired or unknown key; removing a member revokes their keys in that tenant for good, so
 * re-adding them brings none back). Routes with `config.sessionOnly` (managing people and credentials)
 * refuse keys outright: 403 API_KEY_NOT_ALLOWED. Its role is
 * min(key role, the creator's current effective role); per-user denials of the creator apply, grants
 * never lift a key above that role. A key never acts as an owner (`req.membership.role` is at most
 * 'admin', and 'member' below an admin-level key), so owner- and admin-membership-only actions
 * (ownership, billing) follow the key's role too. Tenant status rules are the same as for sessions.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyContextConfig, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Gauge, type Registry } from 'prom-client'
import type { Membership, User } from '../../../drizzle/host/schema.js'
import type { AppOptions } from '../config.js'
import { badRequest, conflict, forbidden, notFound, tenantMoving } from '../lib/errors.js'
import type { CatalogHandle } from '../tenancy/catalog.js'
import { createMemberships, type Memberships } from '../tenancy/memberships.js'
import type { ProvisionedTenant, Provisioner } from '../tenancy/provisioning.js'
import { type ApiKeyIdentity, invalidApiKey } from '../identity/api-keys.js'
import { type AccessRule, createRoleResolver, hasMinRole, ROLE_LEVEL, type Role } from '../tenancy/rbac.js'
import { defaultResolvers, fromSession, resolveTenantRefs } from '../tenancy/resolve.js'
import { clientClosed } from '../tenancy/pool-manager.js'
import type { PoolManager, ServerPoolStats, TenantDb, TenantLease, TenantRecord } from '../tenancy/types.js'
import type { Logger } from 'pino'
import { createTenant as createTenantIn } from '../tenancy/create-tenant.js'
import type { ProvisionInput } from '../tenancy/provisioning.js'
import { isUuid } from '../lib/uuid.js'
import { routeConfig } from '../lib/route-config.js'
import { bindLogContext } from '../lib/request-context.js'

export interface Tenancy {
  catalog: CatalogHandle
  pools: PoolManager
  provisioner: Provisioner
  memberships: Memberships
  /**
   * Create a tenant in the configured mode (tenancy/create-tenant.ts): queued → answers at once with the
   * tenant 'provisioning' (a worker makes it 'active'); PROVISION_INLINE → provisioned in the call, 'active'.
   * 503 QUEUE_UNAVAILABLE (tenant marked failed) when the queue refuses the first job.
   */
  createTenant(input: ProvisionInput): Promise<ProvisionedTenant>
  /** A personal tenant owned by `user` (createTenant, so 'provisioning' or 'active'). */
  provisionPersonalTenant(user: User, slug: string, name?: string): Promise<Pick<ProvisionedTenant, 'id' | 'slug' | 'name' | 'status'>>
}

declare module 'fastify' {
  interface FastifyInstance {
    tenancy: Tenancy
    /**
     * The /api scope's preValidation hook (callback style: a request whose lookups all hit the caches is
     * decided synchronously, with no promise; anything else goes the async way).
     */
    tenantGuard: (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void
  }
  interface FastifyRequest {
    tenant: TenantRecord | null
    membership: Membership | null
    role: Role | null
    /** The resolved tenant's database. Throws outside a guarded route: there is no default tenant. */
    readonly tenantDb: TenantDb
  }
  interface FastifyContextConfig {
    /** Minimum role, and optionally the (resource, action) whose per-user grant or denial overrides it. */
    access?: AccessRule
    /** Let members reach this route while the tenant is suspended (e.g. billing, to pay and be resumed). */
    allowSuspended?: boolean
    /**
     * A person must be signed in (403 API_KEY_NOT_ALLOWED for an API key): the route manages people or
     * credentials (members, grants, invitations, ownership, API keys), which a leaked key must not be
     * able to do in ways that outlive its revocation.
     */
    sessionOnly?: boolean
    /**
     * A connection that stays open (Server-Sent Events, a WebSocket): the tenant's pool lease ends as
     * soon as the guard has decided, so an open stream holds no connection budget; its handler has no
     * `req.tenantDb`.
     */
    longLived?: boolean
  }
}

/** What a moving tenant still serves. */
const READ_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS'])
const kLease = Symbol('tenantLease')
/** The abort reason: a plain value, not the DOMException (with its stack trace) abort() makes by default. */
const CLOSED = 'client closed'
/** The pool answered (a lease or an error): from then on a closing client has no wait to abort. */
const kGranted = Symbol('leaseGranted')
/** On the raw response: the request whose lease its 'close' returns (the synchronous path). */
const kOwner = Symbol('leaseOwner')
type WithLease = FastifyRequest & { [kLease]?: TenantLease; [kGranted]?: boolean }

/** Does a resolved reference (lower-cased id or slug, read as the catalog reads it) name this tenant? */
const names = (tenant: TenantRecord, ref: string) => (isUuid(ref) ? ref === tenant.id : ref === tenant.slug)
const lower = (a: Role, b: Role): Role => (ROLE_LEVEL[a] <= ROLE_LEVEL[b] ? a : b)
/** The membership an API key acts with: never owner; an admin-level key keeps admin, anything below is a plain member. */
const keyMembership = (m: Membership, role: Role): Membership => ({
  ...m,
  role: m.role === 'member' || role !== 'admin' ? 'member' : 'admin',
})

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const { catalog, pools, provisioner } = fastify.services
    const memberships = createMemberships({
      db: fastify.host.db,
      redis: fastify.redis,
      bus: fastify.services.invalidations,
      channel: `${config.redisPrefix}:memberships`,
      logger: fastify.log,
    })
    await memberships.ready
    fastify.addHook('onClose', () => memberships.close())

    registerTenancyGauges(fastify.metrics.registry, pools, catalog)

    const roles = createRoleResolver({ onInvalidate: memberships.onInvalidate })
    const resolvers = defaultResolvers({ domainSuffix: config.tenantDomainSuffix })
    // An API-key request has no session to read a tenant from: only what the request itself names.
    const keyResolvers = resolvers.filter((r) => r !== fromSession)

    const createTenant = (input: ProvisionInput) =>
      createTenantIn(
        { provisioner, tasks: fastify.services.tasks, inline: config.jobs.provisionInline, logger: fastify.log as Logger },
        input,
      )

    fastify.decorate('tenancy', {
      catalog,
      pools,
      provisioner,
      memberships,
      createTenant,
      async provisionPersonalTenant(user, slug, name) {
        const tenant = await createTenant({
          slug,
          name: name ?? `${user.name ?? user.email.split('@')[0]}'s workspace`,
          ownerUserId: user.id,
        })
        return { id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status }
      },
    } satisfies Tenancy)

    fastify.decorateRequest('tenant', null)
    fastify.decorateRequest('membership', null)
    fastify.decorateRequest('role', null)
    fastify.decorateRequest('tenantDb', {
      getter(this: WithLease) {
        const lease = this[kLease]
        if (!lease) throw new Error('tenant database requested outside a tenant-scoped route (no tenant resolved)')
        return lease.db
      },
    })

    // The lease ends when the response is done, however the request ended: the raw response's 'close'
    // fires after a normal finish, an error and a client that gave up (onResponse does not fire for the
    // last). Closing before the lease is granted aborts the wait, so a given-up request never holds budget.
    const release = (req: FastifyRequest) => {
      const lease = (req as WithLease)[kLease]
      if (lease) {
        ;(req as WithLease)[kLease] = undefined
        lease.release()
      }
    }
    // The synchronous path's 'close' listener: one function for every response (no closure per request),
    // finding its request through the response.
    function releaseOnClose(this: ServerResponse & { [kOwner]?: FastifyRequest }) {
      const req = this[kOwner]
      this[kOwner] = undefined
      if (req) release(req)
    }
    const gone = (req: FastifyRequest, res: ServerResponse) =>
      res.destroyed || res.writableEnded || req.raw.aborted || req.raw.socket?.destroyed
    const closeSignal = (req: FastifyRequest, reply: FastifyReply): AbortSignal => {
      const ac = new AbortController()
      const res = reply.raw
      // The client may have gone before the guard got here (session and catalog lookups come first): then
      // 'close' has already fired and would never fire again.
      if (gone(req, res)) ac.abort(CLOSED)
      else
        res.once('close', () => {
          // Only a wait for budget has anything to abort: aborting on every finished request cost an
          // AbortSignal event per request (issue 14's profile: ~4 % of the process).
          if (!(req as WithLease)[kGranted]) ac.abort(CLOSED)
          release(req)
        })
      return ac.signal
    }

    /**
     * The tenant the references name, when they all name the same one (a slug, an id and a former slug
     * still kept as an alias may). Two that disagree (`X-Tenant-ID: a` on `/t/b/api/…`) are a 400, never
     * silently one of them.
     */
    const agreeing = async (refs: string[]): Promise<TenantRecord | undefined> => {
      if (refs.length === 0) return undefined
      const tenant = await catalog.get(refs[0]!)
      for (const ref of refs.slice(1)) {
        if (!tenant || (!names(tenant, ref) && (await catalog.get(ref))?.id !== tenant.id)) {
          throw badRequest(
            'TENANT_CONFLICT',
            'The request names more than one tenant (X-Tenant-ID, /t/:tenant/ path and subdomain disagree)',
          )
        }
      }
      return tenant
    }

    /** The checks between "who and which tenant" and the pool lease, the same on both paths. */
    const admit = (
      req: FastifyRequest,
      route: FastifyContextConfig,
      key: ApiKeyIdentity | null,
      tenant: TenantRecord | undefined,
      membership: Membership | undefined,
    ) => {
      if (!tenant || !membership || membership.status !== 'active' || tenant.status === 'deleted') {
        throw notFound('TENANT_NOT_FOUND', 'No such tenant')
      }
      if (tenant.status === 'suspended' && !route.allowSuspended)
        throw forbidden('TENANT_SUSPENDED', 'This tenant is suspended')
      if (tenant.status !== 'active' && tenant.status !== 'suspended')
        throw conflict('TENANT_NOT_READY', `This tenant is not ready yet (${tenant.status})`)
      // Moving (tenancy/move): reads go on against the old copy through a read-only handle; writes wait.
      if (tenant.moving && !READ_METHODS.has(req.method)) throw tenantMoving()
      // Whatever the key's role: no key can do this (checked before the role, so the answer says why).
      if (key && route.sessionOnly) {
        throw forbidden('API_KEY_NOT_ALLOWED', 'This action needs a logged-in person; API keys cannot manage people or credentials')
      }
      return tenant
    }
    const insufficient = (rule: AccessRule, role: Role) =>
      forbidden(
        'INSUFFICIENT_ROLE',
        `This action needs the ${rule.minRole} role${rule.resource ? ` or a grant on ${rule.resource}:${rule.action}` : ''}`,
        { requiredRole: rule.minRole, role },
      )
    /** The lease is held: the tenant is the request's, then the role and the route's rule. */
    const leased = (req: FastifyRequest, tenant: TenantRecord) => {
      req.tenant = tenant
      bindLogContext(req, { tenantId: tenant.id })
    }
    const withRole = (req: FastifyRequest, key: ApiKeyIdentity | null, membership: Membership, role: Role) => {
      req.role = key ? lower(role, key.role) : role
      req.membership = key ? keyMembership(membership, req.role) : membership
    }

    /**
     * Everything from the caches, synchronously: true when the request is admitted (lease held, role set),
     * false when something was not cached or the pool must be waited for (nothing held: the async path
     * starts over, the caches answering what this one already read), a promise when only the route's
     * grant check is left to read (on the lease now held). Refusals are thrown.
     */
    const fastGuard = (req: FastifyRequest, reply: FastifyReply, route: FastifyContextConfig): boolean | Promise<void> => {
      let tenant: TenantRecord | undefined
      let membership: Membership | undefined
      const key = fastify.authenticateApiKey(req) // null without an Authorization header
      if (key instanceof Promise) {
        key.catch(() => {}) // the async path asks again (and sees the same answer)
        return false
      }
      if (key) {
        const m = memberships.peek(key.user.id, key.tenantId)
        if (m === undefined) return false
        if (m?.status !== 'active') throw invalidApiKey()
        membership = m
        tenant = catalog.peek(key.tenantId)
        if (!tenant) return false
        const refs = resolveTenantRefs(req, keyResolvers)
        if (refs[0]) {
          if (refs.length > 1) return false
          const named = catalog.peek(refs[0])
          if (!named) return false
          if (named.id !== tenant.id) tenant = undefined
        }
      } else {
        const user = fastify.resolveUser(req)
        if (user) {
          user.catch(() => {})
          return false
        }
        const refs = resolveTenantRefs(req, resolvers)
        if (!refs[0])
          throw badRequest(
            'TENANT_REQUIRED',
            'No tenant given: send X-Tenant-ID, use /t/:tenant/…, a tenant subdomain, or switch with PUT /me/active-tenant',
          )
        if (refs.length > 1) return false
        tenant = catalog.peek(refs[0])
        if (!tenant) return false
        const m = memberships.peek(req.user!.id, tenant.id)
        if (m === undefined) return false
        membership = m ?? undefined
      }
      const admitted = admit(req, route, key, tenant, membership)
      // A client gone before the guard: the async path answers it (and holds nothing).
      const res = reply.raw as ServerResponse & { [kOwner]?: FastifyRequest }
      if (gone(req, res)) return false
      const userId = req.user!.id
      const role = roles.peekEffectiveRole(admitted.id, userId, membership!.role)
      if (role === undefined) return false
      const lease = pools.tryAcquire(admitted)
      if (!lease) return false
      // From here the lease is the request's until the response closes (or onResponse, whichever comes first).
      ;(req as WithLease)[kGranted] = true
      ;(req as WithLease)[kLease] = lease
      res[kOwner] = req
      res.on('close', releaseOnClose)
      leased(req, admitted)
      withRole(req, key, membership!, role)
      const rule = route.access
      if (rule) {
        // A key is held to its role: no grant of its creator lifts it above.
        const keyAllows = !key || hasMinRole(req.role!, rule.minRole)
        const allowed = keyAllows && roles.peekAllows(admitted.id, userId, req.membership!.role, req.role!, rule)
        // Grants not cached: read them on the lease now held.
        if (allowed === undefined) return checkGrants(req, route, rule, key, lease)
        if (!allowed) throw insufficient(rule, req.role!)
      }
      if (route.longLived) release(req)
      return true
    }
    const checkGrants = async (req: FastifyRequest, route: FastifyContextConfig, rule: AccessRule, key: ApiKeyIdentity | null, lease: TenantLease) => {
      const keyAllows = !key || hasMinRole(req.role!, rule.minRole)
      if (!(keyAllows && (await roles.allows(lease.db, req.tenant!.id, req.user!.id, req.membership!.role, req.role!, rule))))
        throw insufficient(rule, req.role!)
      if (route.longLived) release(req)
    }

    const slowGuard = async (req: FastifyRequest, reply: FastifyReply, route: FastifyContextConfig) => {
      let tenant: TenantRecord | undefined
      let membership: Membership | undefined
      const key = await fastify.authenticateApiKey(req) // null without an Authorization header
      if (key) {
        membership = await memberships.find(key.user.id, key.tenantId)
        if (membership?.status !== 'active') throw invalidApiKey()
        tenant = await catalog.get(key.tenantId)
        const refs = resolveTenantRefs(req, keyResolvers)
        const named = await agreeing(refs)
        if (tenant && refs[0] && named?.id !== tenant.id) tenant = undefined
      } else {
        await fastify.requireUser(req, undefined as never)
        const refs = resolveTenantRefs(req, resolvers)
        if (!refs[0])
          throw badRequest(
            'TENANT_REQUIRED',
            'No tenant given: send X-Tenant-ID, use /t/:tenant/…, a tenant subdomain, or switch with PUT /me/active-tenant',
          )
        tenant = await agreeing(refs)
        membership = tenant && (await memberships.find(req.user!.id, tenant.id))
      }
      const user = req.user!
      const admitted = admit(req, route, key, tenant, membership)

      const signal = closeSignal(req, reply)
      let lease: TenantLease
      try {
        lease = await pools.acquire(admitted, { signal })
      } finally {
        ;(req as WithLease)[kGranted] = true
      }
      ;(req as WithLease)[kLease] = lease
      if (signal.aborted) {
        // The request closed while the guard ran on (acquire resolved first): nothing else would return it.
        release(req)
        throw clientClosed()
      }
      leased(req, admitted)
      withRole(req, key, membership!, await roles.effectiveRole(lease.db, admitted.id, user.id, membership!.role))

      const rule = route.access
      // A key is held to its role: no grant of its creator lifts it above.
      const keyAllows = !rule || !key || hasMinRole(req.role!, rule.minRole)
      if (rule && !(keyAllows && (await roles.allows(lease.db, admitted.id, user.id, req.membership!.role, req.role!, rule)))) {
        throw insufficient(rule, req.role!)
      }
      if (route.longLived) release(req)
    }

    fastify.decorate('tenantGuard', (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
      const route = routeConfig(req)
      let admitted: boolean | Promise<void>
      try {
        admitted = fastGuard(req, reply, route)
      } catch (err) {
        return done(err as Error)
      }
      if (admitted === true) return done()
      ;(admitted || slowGuard(req, reply, route)).then(() => done(), done)
    })

    // Belt and braces with the 'close' listener (release is idempotent); inject()ed requests end here too.
    // (No onRequestAbort hook: Fastify would add a 'close' listener and a closure to every request for it,
    // and the response's own 'close' listeners above already end a wait or a lease when the client goes;
    // a client gone before the guard is seen by `gone`.)
    fastify.addHook('onResponse', (req, _reply, done) => {
      release(req)
      done()
    })
  },
  { name: 'tenancy', dependencies: ['host-db', 'redis', 'auth', 'metrics', 'services'] },
)

/** Pool and catalog gauges, read at scrape time (no work on the request path). */
function registerTenancyGauges(registry: Registry, pools: PoolManager, catalog: CatalogHandle) {
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read())
      },
    })
  gauge('tenant_pools_open', 'Tenant connection pools open', () => pools.stats().openPools)
  gauge(
    'tenant_pool_connections_reserved',
    'Connection slots reserved by open tenant pools (the budget counts these)',
    () => pools.stats().reservedConnections,
  )
  gauge('tenant_pool_connections_open', 'Tenant connections open (estimate)', () => pools.stats().openConnections)
  gauge('tenant_pool_waiters', 'Requests waiting for connection budget', () => pools.stats().waiters)
  gauge('tenant_pool_leases', 'Tenant pool leases held (requests and jobs using a tenant database now)', () => pools.stats().leases)
  gauge('tenant_pool_budget', 'Connection budget of this process', () => pools.stats().budget)
  // Per database server (core_db_servers): each has its own budget; label cardinality is the server count.
  const perServer = (name: string, help: string, read: (s: ServerPoolStats) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['server'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [server, s] of Object.entries(pools.stats().servers)) this.set({ server }, read(s))
      },
    })
  perServer('tenant_server_pools_open', 'Tenant connection pools open, per database server', (s) => s.openPools)
  perServer('tenant_server_pool_connections_reserved', 'Connection slots reserved per database server (its budget counts these)', (s) => s.reservedConnections)
  perServer('tenant_server_pool_waiters', 'Requests waiting for a database server\'s budget', (s) => s.waiters)
  perServer('tenant_server_pool_budget', 'Connection budget of this process on each database server', (s) => s.budget)
  perServer('tenant_server_pool_starved', '1 while a database server\'s budget is starved (POOL_EXHAUSTED and no grant since)', (s) => Number(s.starved))
  gauge('tenant_catalog_cache_hits', 'Catalog cache hits since start', () => catalog.stats().hits)
  gauge('tenant_catalog_cache_misses', 'Catalog cache misses since start', () => catalog.stats().misses)
  gauge('tenant_catalog_cache_size', 'Tenants cached', () => catalog.stats().size)
}
