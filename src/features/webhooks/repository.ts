/** The tenant's webhook endpoints and their delivery log (in the tenant's own database or rows, like projects). */
import { and, arrayContains, desc, eq, inArray, lt, sql } from 'drizzle-orm'
import { type WebhookDelivery, type WebhookEndpoint, webhookDeliveries, webhookEndpoints } from '../../../drizzle/tenant/schema.js'
import type { TenantDb } from '../../core/tenancy/types.js'

export function createWebhooksRepository(db: TenantDb) {
  return {
    async list(): Promise<WebhookEndpoint[]> {
      return db.select().from(webhookEndpoints).orderBy(desc(webhookEndpoints.id))
    },
    findById: async (id: string): Promise<WebhookEndpoint | undefined> =>
      (await db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)))[0],

    /** Enabled endpoints subscribed to this event type. */
    async subscribedTo(type: string): Promise<WebhookEndpoint[]> {
      return db
        .select()
        .from(webhookEndpoints)
        .where(and(eq(webhookEndpoints.enabled, true), arrayContains(webhookEndpoints.events, [type])))
    },

    async create(values: { url: string; description: string | null; events: string[]; secretSealed: string }) {
      const [row] = await db.insert(webhookEndpoints).values(values).returning()
      return row!
    },

    async update(id: string, patch: Partial<Pick<WebhookEndpoint, 'url' | 'description' | 'events' | 'enabled'>>) {
      // Enabling again starts the failure count afresh.
      const reset = patch.enabled === true ? { consecutiveFailures: 0, disabledReason: null } : {}
      const [row] = await db
        .update(webhookEndpoints)
        .set({ ...patch, ...reset, updatedAt: sql`now()` })
        .where(eq(webhookEndpoints.id, id))
        .returning()
      return row
    },

    async remove(id: string) {
      return (await db.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id)).returning({ id: webhookEndpoints.id })).length > 0
    },

    /** Newest first; ids are UUIDv7, so the last id of a page is the cursor. */
    async deliveries(endpointId: string, { limit, cursor }: { limit: number; cursor?: string | undefined }) {
      const rows = await db
        .select()
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.endpointId, endpointId), cursor ? lt(webhookDeliveries.id, cursor) : undefined))
        .orderBy(desc(webhookDeliveries.id))
        .limit(limit + 1)
      const items = rows.slice(0, limit)
      return { items, nextCursor: rows.length > limit ? items.at(-1)!.id : null }
    },

    findDelivery: async (endpointId: string, id: string): Promise<WebhookDelivery | undefined> =>
      (await db.select().from(webhookDeliveries).where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.endpointId, endpointId))))[0],

    /** Deletes up to 1000 deliveries created more than `days` ago. */
    async trimDeliveries(days: number) {
      const old = db
        .select({ id: webhookDeliveries.id })
        .from(webhookDeliveries)
        .where(lt(webhookDeliveries.createdAt, sql`now() - make_interval(days => ${days})`))
        .limit(1000)
      await db.delete(webhookDeliveries).where(inArray(webhookDeliveries.id, old))
    },

    /** A delivery row; an id already there (a fan-out run again) is left as it is. */
    async addDelivery(values: { id: string; endpointId: string; eventId: string; eventType: string; payload: string }) {
      await db.insert(webhookDeliveries).values(values).onConflictDoNothing({ target: webhookDeliveries.id })
    },
  }
}
