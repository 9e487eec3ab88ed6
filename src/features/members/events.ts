/** The domain events members publish (src/core/events/domain-events.ts): webhooks deliver them, a realtime module may stream them. */
declare module '../../core/events/domain-events.js' {
  interface DomainEventTypes {
    /** Someone accepted an invitation: they are a member now. */
    'member.joined': { member: { userId: string; email: string; role: string; localRole: string | null } }
    /** A member left (`removedBy` null) or was removed by an admin. */
    'member.left': { member: { userId: string; role: string }; removedBy: string | null }
  }
}
export {}
