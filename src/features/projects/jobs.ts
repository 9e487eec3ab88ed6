/**
 * The example tenant job: `projects.recount` counts the tenant's projects by status, reading the tenant's
 * own database through the context the worker gives it (ctx.db). Submitted by POST /api/projects/recount.
 */
import { count } from 'drizzle-orm'
import { projects } from '../../../drizzle/tenant/schema.js'
import { type Jobs, tenantJob } from '../../core/jobs/registry.js'
import { projectsImport } from './import.js'

export const projectsRecount = tenantJob({
  payload: {},
  maxRetries: 2,
  async process(ctx) {
    const rows = await ctx.db.select({ status: projects.status, n: count() }).from(projects).groupBy(projects.status)
    const by = Object.fromEntries(rows.map((r) => [r.status, r.n]))
    return { total: rows.reduce((n, r) => n + r.n, 0), active: by.active ?? 0, archived: by.archived ?? 0 }
  },
})

export const PROJECT_JOBS = { 'projects.recount': projectsRecount, 'projects.import': projectsImport }

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof PROJECT_JOBS> {}
}
