/**
 * Platform administration, for platform admins only (guard.ts): Bull Board at /admin/queues (system, tenant and
 * schedules queues), and the admin API under /admin/api: tenants (provisioning, their lifecycle with the hard
 * delete as a job, bulk actions as a job, comping a plan, moving a tenant between isolation modes as a job); users (search, disable and enable, ending their
 * sessions); jobs (records by state, type, tenant and time; retrying failed ones; one job's progress); tenant
 * migrations across the fleet (who is behind; queueing the fleet migration); the audit log, paged or exported
 * as JSON lines; the database servers (list, drain as jobs, activate, remove); platform API keys, `tka_…`, which every /admin/api route accepts instead of a session.
 */
import { defineFeature } from '../../core/feature.js'
import adminApiRoutes from './api/index.js'
import { ADMIN_ERROR_CODES } from './error-codes.js'
import { ADMIN_JOBS } from './jobs.js'
import adminRoutes from './routes.js'

export default defineFeature({
  name: 'admin',
  errors: ADMIN_ERROR_CODES,
  routes: [
    { scope: 'root', prefix: '/admin', plugin: adminRoutes },
    // Every /admin/api route file, under the platform-admin guard installed once for all of them (api/index.ts).
    { scope: 'root', prefix: '/admin/api', plugin: adminApiRoutes },
  ],
  jobs: ADMIN_JOBS,
})
