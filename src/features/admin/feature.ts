/**
 * Platform administration, for platform admins only (guard.ts): Bull Board at /admin/queues (system, tenant and
 * schedules queues), and the admin API under /admin/api: tenants (provisioning, their lifecycle with the hard
 * delete as a job, bulk actions as a job, comping a plan, moving a tenant between isolation modes as a job); users (search, disable and enable, ending their
 * sessions); jobs (records by state, type, tenant and time; retrying failed ones; one job's progress); tenant
 * migrations across the fleet (who is behind; queueing the fleet migration); the audit log, paged or exported
 * as JSON lines; the database servers (list, drain as jobs, activate, remove); platform API keys, `tka_…`, which every /admin/api route accepts instead of a session.
 */
import { defineFeature } from '../../core/feature.js'
import adminApiKeyRoutes from './api/api-keys.js'
import auditLogRoutes from './api/audit-logs.js'
import { ADMIN_ERROR_CODES } from './error-codes.js'
import jobAdminRoutes from './api/jobs.js'
import migrationAdminRoutes from './api/migrations.js'
import tenantMoveRoutes from './api/tenant-move.js'
import tenantPlanRoutes from './api/tenant-plan.js'
import tenantAdminRoutes from './api/tenants.js'
import serverAdminRoutes from './api/servers.js'
import userAdminRoutes from './api/users.js'
import { ADMIN_JOBS } from './jobs.js'
import adminRoutes from './routes.js'

export default defineFeature({
  name: 'admin',
  errors: ADMIN_ERROR_CODES,
  routes: [
    { scope: 'root', prefix: '/admin', plugin: adminRoutes },
    { scope: 'root', prefix: '/admin/api/tenants', plugin: tenantAdminRoutes },
    { scope: 'root', prefix: '/admin/api/tenants', plugin: tenantPlanRoutes },
    { scope: 'root', prefix: '/admin/api/tenants', plugin: tenantMoveRoutes },
    { scope: 'root', prefix: '/admin/api/users', plugin: userAdminRoutes },
    { scope: 'root', prefix: '/admin/api/audit-logs', plugin: auditLogRoutes },
    { scope: 'root', prefix: '/admin/api/jobs', plugin: jobAdminRoutes },
    { scope: 'root', prefix: '/admin/api/migrations', plugin: migrationAdminRoutes },
    { scope: 'root', prefix: '/admin/api/api-keys', plugin: adminApiKeyRoutes },
    { scope: 'root', prefix: '/admin/api/servers', plugin: serverAdminRoutes },
  ],
  jobs: ADMIN_JOBS,
})
