/** The domain events a tenant's endpoints can subscribe to (declared, with their data, by the features that publish them). */
import type { DomainEventType } from '../../core/events/domain-events.js'

export const WEBHOOK_EVENT_TYPES = [
  'project.created',
  'project.updated',
  'project.deleted',
  'member.joined',
  'member.left',
  'subscription.changed',
] as const satisfies readonly DomainEventType[]
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number]

export const isWebhookEventType = (type: string): type is WebhookEventType => (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type)
