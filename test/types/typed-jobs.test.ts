/**
 * Job names and payloads are checked at compile time: `npm test` runs `tsc --noEmit` first, so each
 * `@ts-expect-error` below fails the run if the line ever compiles (an unknown job name, a payload of
 * the wrong shape). The registry is JobTypes (src/core/jobs/registry.ts), filled by the core's and the
 * features' job modules.
 */
import { describe, expect, it } from 'vitest'
import type { Services } from '../../src/services.js'

describe('services.tasks.submit', () => {
  it('knows every job of the core and the features, and nothing else', () => {
    const submitAll = (tasks: Services['tasks']) => [
      // @ts-expect-error: no such job
      tasks.submit('no.such.job', {}),
      // @ts-expect-error: a typo of a real one
      tasks.submit('emial.send', { to: 'a@example.com', template: 'welcome', variables: {} }),
      // @ts-expect-error: projects.recount is a tenant job: its payload needs tenantId
      tasks.submit('projects.recount', {}),
      // Known: core (email, fleet, provisioning steps) and features (projects, billing, auth).
      tasks.submit('email.send', { to: 'a@example.com', template: 'welcome', variables: {} }),
      tasks.submit('tenant.migrate', { tenantId: '0190a0a0-0000-7000-8000-000000000000' }),
      tasks.submit('tenant.provision.createDatabase', { tenantId: '0190a0a0-0000-7000-8000-000000000000' }),
      tasks.submit('projects.recount', { tenantId: '0190a0a0-0000-7000-8000-000000000000' }),
      tasks.submit('auth.password_reset_request', { email: 'a@example.com' }),
    ]
    expect(typeof submitAll).toBe('function')
  })
})
