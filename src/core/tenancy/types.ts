/**
 * The contracts between the tenancy pieces. Code that touches a tenant's data holds a TenantRecord
 * (resolved from the catalog) and asks the pool manager for that tenant's database; there is no
 * ambient "current tenant" anywhere, so concurrent requests and jobs cannot see each other's data.
 */
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js'
import type { MigrationStatus, TenantIsolation, TenantStatus } from '../../../drizzle/host/schema.js'
import type * as tenantSchema from '../../../drizzle/tenant/schema.js'
import type { Sql } from '../db/connect.js'

export type TenantSchema = typeof tenantSchema
/**
 * A tenant's database handle, the same type in both isolation modes: a database tenant's pool, or (shared)
 * a client over the shared pool that runs every statement in a transaction scoped to the tenant.
 */
export type TenantDb = PostgresJsDatabase<TenantSchema> & { $client: Sql }

/** A catalog row as the runtime needs it: the database URL already decrypted. Never serialised to clients. */
export interface TenantRecord {
  id: string
  slug: string
  name: string
  status: TenantStatus
  planTier: string
  /** The Postgres server (core_db_servers.name) its database is on; its pool counts against that server's budget. */
  server: string
  /** 'shared': dbUrl is the shared database (its data role), and the pool manager hands out a handle scoped to this tenant. */
  isolation: TenantIsolation
  dbName: string
  dbUrl: string
  poolerUrl: string | undefined
  maxConnections: number | undefined
  migrationVersion: string | undefined
  migrationStatus: MigrationStatus
  /**
   * The tenant is moving to another location (src/core/tenancy/move): writes are refused (503 TENANT_MOVING)
   * and the pool manager hands out read-only handles; reads keep working.
   */
  moving?: boolean
}

/** Why a tenant's entry was invalidated, when other processes must act on it beyond reloading. */
export interface InvalidationHint {
  /** The tenant started moving (tenancy/move): its handles still leased must turn read-only. */
  moving?: boolean
}

/** Read side of the tenant catalog, cached per process and invalidated across processes. */
export interface Catalog {
  /** By id (uuid) or slug; undefined when unknown or soft-deleted. Single-flight per key. */
  get(idOrSlug: string): Promise<TenantRecord | undefined>
  /** Drop the cached entry here and in every other process (Redis pub/sub). Call after any catalog write. */
  invalidate(tenantId: string, hint?: InvalidationHint): Promise<void>
  close(): Promise<void>
}

/** One server's share of the pool manager (PoolStats.servers). */
export interface ServerPoolStats {
  openPools: number
  reservedConnections: number
  openConnections: number
  waiters: number
  leases: number
  /** This server's budget (core_db_servers.max_connections, else POOL_CONNECTION_BUDGET). */
  budget: number
  /** POOL_EXHAUSTED timeouts on this server within the starved window and no grant on it since. */
  starved: boolean
}

export interface PoolStats {
  openPools: number
  /** Connection slots reserved by open pools (what the budget counts). */
  reservedConnections: number
  /** Connections actually open right now. */
  openConnections: number
  /** Callers waiting for budget. */
  waiters: number
  /** Leases held right now (requests and jobs using a tenant pool). */
  leases: number
  /** The budget of a server that sets none (POOL_CONNECTION_BUDGET); each server's own is in `servers`. */
  budget: number
  /** Per server, every server with a pool open, a waiter or a recent POOL_EXHAUSTED. */
  servers: Record<string, ServerPoolStats>
  /**
   * Waiters time out (POOL_EXHAUSTED) and nobody was granted a pool since the first of those timeouts,
   * the last one within the starved window: the process can't serve new tenants; readiness reports it.
   */
  starved: boolean
}

export interface TenantLease {
  db: TenantDb
  /** Return the pool to the LRU (it may then be evicted). Idempotent. */
  release(): void
}

/** What the pool manager needs of a tenant (isolation defaults to 'database'). */
export type PoolTargetOf = Pick<TenantRecord, 'id' | 'dbUrl' | 'poolerUrl' | 'maxConnections'> & Partial<Pick<TenantRecord, 'isolation' | 'moving' | 'server'>>

export interface PoolManager {
  /**
   * Lease the tenant's pool; throws when no tenant is given (fail closed) and 503 POOL_EXHAUSTED when the budget stays full.
   * An aborted `signal` takes a waiter out of the queue (499 CLIENT_CLOSED_REQUEST), and a pool granted to an
   * aborted caller goes straight back, so a request the client gave up on never holds budget.
   */
  acquire(tenant: PoolTargetOf, opts?: { signal?: AbortSignal }): Promise<TenantLease>
  /** `acquire` when it needs no wait (the tenant's pool is open): the lease at once, else undefined (call `acquire`). */
  tryAcquire(tenant: PoolTargetOf): TenantLease | undefined
  /** acquire + fn + release. */
  withTenant<T>(tenant: PoolTargetOf, fn: (db: TenantDb) => Promise<T>): Promise<T>
  /**
   * Close the tenant's pool now (waits for leases to end). Used before DROP DATABASE and on catalog changes.
   * A shared tenant's handle is dropped; sharedPoolKey(url) closes the shared pool itself (after a shared migration).
   * `readOnly` (the tenant started moving): a shared tenant's handle still leased runs its later statements read-only.
   */
  evict(tenantId: string, opts?: { readOnly?: boolean }): Promise<void>
  /** Close every pool on a database server (waits for their leases to end): the server was removed (server-admin.ts). */
  evictServer(server: string): Promise<void>
  stats(): PoolStats
  close(): Promise<void>
}
