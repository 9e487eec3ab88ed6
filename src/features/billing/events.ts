/** The domain events billing publishes (src/core/events/domain-events.ts): webhooks deliver them, a realtime module may stream them. */
declare module '../../core/events/domain-events.js' {
  interface DomainEventTypes {
    /** A Stripe event changed the tenant's subscription (created, plan or status changed). */
    'subscription.changed': {
      subscription: { id: string; status: string; previousStatus: string | null; planKey: string | null; created: boolean }
    }
  }
}
export {}
