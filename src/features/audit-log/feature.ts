/** A tenant's own audit log, for its admins (`/api/audit-logs`): JSON pages, and a JSON lines export on plans with `audit_log_export`. */
import { defineFeature } from '../../core/feature.js'
import { AUDIT_LOG_ERROR_CODES } from './error-codes.js'
import auditLogRoutes from './routes.js'

export default defineFeature({
  name: 'audit-log',
  errors: AUDIT_LOG_ERROR_CODES,
  routes: [{ scope: 'tenant', prefix: '/audit-logs', plugin: auditLogRoutes }],
})
