/** The domain events projects publish (src/core/events/domain-events.ts): webhooks deliver them, a realtime module may stream them. */
import type { Static } from 'typebox'
import type { ProjectSchema } from './schemas.js'

type ProjectJson = Static<typeof ProjectSchema>

declare module '../../core/events/domain-events.js' {
  interface DomainEventTypes {
    'project.created': { project: ProjectJson }
    'project.updated': { project: ProjectJson }
    'project.deleted': { project: { id: string } }
  }
}
