/**
 * Tenants a person creates and lists (`/tenants`), a tenant managing itself (`/api/tenant`: rename,
 * slug change, deletion), and the welcome email when one is ready.
 */
import { defineFeature } from '../../core/feature.js'
import { TENANT_ERROR_CODES } from './error-codes.js'
import { TENANT_JOBS } from './jobs.js'
import tenantRoutes from './routes.js'
import tenantSelfService from './self-service.js'
import { sendWelcomeEmail } from './welcome-email.js'

export default defineFeature({
  name: 'tenants',
  errors: TENANT_ERROR_CODES,
  routes: [
    { scope: 'root', prefix: '/tenants', plugin: tenantRoutes },
    { scope: 'tenant', prefix: '/tenant', plugin: tenantSelfService },
  ],
  jobs: TENANT_JOBS,
  lifecycle: [sendWelcomeEmail],
})
