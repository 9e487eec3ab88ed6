/** Tenants a person creates and lists (`/tenants`), and the welcome email when one is ready. */
import { defineFeature } from '../../core/feature.js'
import tenantRoutes from './routes.js'
import { sendWelcomeEmail } from './welcome-email.js'

export default defineFeature({
  name: 'tenants',
  routes: [{ scope: 'root', prefix: '/tenants', plugin: tenantRoutes }],
  lifecycle: [sendWelcomeEmail],
})
