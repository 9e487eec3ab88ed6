/**
 * Domain events: what happened in a tenant (a project created, a member joined, the subscription
 * changed), published by the feature that made the change, right after it committed, and handed to every
 * listener in this process. The webhooks feature turns them into deliveries; a realtime module can fan
 * the same events out to SSE/WebSocket clients by adding a listener, with no change where they are published.
 *
 *   await fastify.services.events.publish(tenantId, 'project.created', { project })
 *
 * A feature declares the events it publishes, with their data, by declaration merging:
 *
 *   declare module '../../core/events/domain-events.js' {
 *     interface DomainEventTypes { 'project.created': { project: ProjectJson } }
 *   }
 *
 * and a feature that listens gives `listen` in its manifest (src/core/feature.ts). publish() never
 * throws: the change is committed whatever a listener does; a listener that fails is logged. Listeners
 * that must not lose an event write it to the outbox (the webhooks feature does), so they stay quick.
 */
import type { Logger } from 'pino'
import { uuidv7 } from 'uuidv7'

// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging (each publishing feature)
export interface DomainEventTypes {}
export type DomainEventType = keyof DomainEventTypes & string

export interface DomainEvent<T extends DomainEventType = DomainEventType> {
  /** UUIDv7: unique per event, time-ordered (the webhook-id of its deliveries). */
  id: string
  type: T
  tenantId: string
  /** ISO 8601. */
  occurredAt: string
  data: DomainEventTypes[T]
}

export type DomainEventListener = (event: DomainEvent) => Promise<void> | void

export interface DomainEvents {
  publish<T extends DomainEventType>(tenantId: string, type: T, data: DomainEventTypes[T]): Promise<DomainEvent<T>>
  /** Returns the unsubscribe function. */
  listen(listener: DomainEventListener): () => void
}

export function createDomainEvents(logger: Pick<Logger, 'error'>): DomainEvents {
  const listeners = new Set<DomainEventListener>()
  return {
    async publish(tenantId, type, data) {
      const event = { id: uuidv7(), type, tenantId, occurredAt: new Date().toISOString(), data }
      await Promise.all(
        [...listeners].map(async (listener) => {
          try {
            await listener(event as DomainEvent)
          } catch (err) {
            logger.error({ err, eventId: event.id, type, tenantId }, 'a domain event listener failed')
          }
        }),
      )
      return event
    },
    listen(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}
