/**
 * Tenants a person creates and lists (`/tenants`), a tenant managing itself (`/api/tenant`: rename,
 * slug change, deletion, an owner's export: `/api/tenant/export`), and the welcome email when one is ready.
 */
import { defineFeature } from '../../core/feature.js'
import { schedule } from '../../core/jobs/schedules.js'
import { TENANT_ERROR_CODES } from './error-codes.js'
import { TENANT_JOBS } from './jobs.js'
import tenantExportRoutes from './export/routes.js'
import tenantRoutes from './routes.js'
import tenantSelfService from './self-service.js'
import { sendWelcomeEmail } from './welcome-email.js'

export default defineFeature({
  name: 'tenants',
  errors: TENANT_ERROR_CODES,
  routes: [
    { scope: 'root', prefix: '/tenants', plugin: tenantRoutes },
    { scope: 'tenant', prefix: '/tenant', plugin: tenantSelfService },
    { scope: 'tenant', prefix: '/tenant/export', plugin: tenantExportRoutes },
  ],
  jobs: TENANT_JOBS,
  schedules: [
    schedule({
      name: 'tenants.purge_exports',
      cron: '5 * * * *',
      job: 'tenants.purge_exports',
      payload: {},
      description: 'Deletes tenant export archives not downloaded within 24 h (status expired), and any file in `EXPORT_DIR` older than that which no ready export owns',
    }),
  ],
  lifecycle: [sendWelcomeEmail],
})
