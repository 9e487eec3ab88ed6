/** Tenant settings (time zone, currency, feature flags) and each member's preferences in the tenant. */
import { defineFeature } from '../../core/feature.js'
import { SETTINGS_ERROR_CODES } from './error-codes.js'
import { preferencesRoutes, settingsRoutes } from './routes.js'

export default defineFeature({
  name: 'settings',
  errors: SETTINGS_ERROR_CODES,
  routes: [
    { scope: 'tenant', prefix: '/settings', plugin: settingsRoutes },
    { scope: 'tenant', prefix: '/me/preferences', plugin: preferencesRoutes },
  ],
})
