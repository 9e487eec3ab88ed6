/**
 * Which event types a tenant's enabled endpoints want, cached per process: the listener asks before it
 * writes a fan-out job, so a project written in a tenant without endpoints costs no outbox row and no job.
 * The routes that change endpoints drop the tenant's entry in every process (Redis pub/sub, the same bus
 * as the catalog); the local entry is dropped before the publish, so a registration is seen at once
 * by the process that made it, and by the others within a message's latency (or the TTL if Redis is down).
 * An endpoint the worker disables stays in the entry until then: its fan-out only finds it disabled.
 */
import { eq } from 'drizzle-orm'
import { webhookEndpoints } from '../../../drizzle/tenant/schema.js'
import type { CatalogHandle } from '../../core/tenancy/catalog.js'
import type { PoolManager } from '../../core/tenancy/types.js'
import { createInvalidatedCache, type InvalidatedCache, type InvalidationBus } from '../../core/lib/invalidated-cache.js'

export type EndpointGate = InvalidatedCache<string, string[]>

const gates = new WeakMap<InvalidationBus, EndpointGate>()
const TTL_MS = 5 * 60_000

/** The process' gate (one per invalidation bus); `deps` are needed the first time, by the listener. */
export function endpointGate(bus: InvalidationBus, redisPrefix: string, deps?: { catalog: CatalogHandle; pools: PoolManager }): EndpointGate | undefined {
  let gate = gates.get(bus)
  if (gate || !deps) return gate
  gate = createInvalidatedCache<string, string[]>({
    bus,
    channel: `${redisPrefix}:webhooks:endpoints`,
    max: 10_000,
    ttlMs: TTL_MS,
    async load(tenantId) {
      const record = await deps.catalog.get(tenantId)
      if (!record) return []
      const rows = await deps.pools.withTenant(record, (db) =>
        db.select({ events: webhookEndpoints.events }).from(webhookEndpoints).where(eq(webhookEndpoints.enabled, true)),
      )
      return [...new Set(rows.flatMap((r) => r.events))]
    },
    onMessage: (tenantId, cache) => cache.drop(tenantId),
  })
  gates.set(bus, gate)
  return gate
}

/** After a route changed a tenant's endpoints: every process reads them again. Never throws (the TTL bounds a lost message). */
export async function endpointsChanged(bus: InvalidationBus, redisPrefix: string, tenantId: string): Promise<void> {
  const gate = endpointGate(bus, redisPrefix)
  if (!gate) {
    await bus.publish(`${redisPrefix}:webhooks:endpoints`, tenantId).catch(() => {})
    return
  }
  gate.drop(tenantId)
  await gate.publish(tenantId).catch(() => {})
}
