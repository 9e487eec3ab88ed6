/** Tenant API keys: create, list, revoke (people only; a key never manages keys). */
import { defineFeature } from '../../core/feature.js'
import { API_KEY_ERROR_CODES } from './error-codes.js'
import { API_KEY_PERMISSIONS } from './permissions.js'
import apiKeyRoutes from './routes.js'

export default defineFeature({
  name: 'api-keys',
  errors: API_KEY_ERROR_CODES,
  routes: [{ scope: 'tenant', prefix: '/api-keys', plugin: apiKeyRoutes }],
  permissions: API_KEY_PERMISSIONS,
})
