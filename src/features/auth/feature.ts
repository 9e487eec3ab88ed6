/** Signing in (password, Google), account flows (verification, reset, email change) and `/me`. */
import { defineFeature } from '../../core/feature.js'
import { AUTH_ERROR_CODES } from './error-codes.js'
import { ACCOUNT_JOBS } from './jobs.js'
import authRoutes from './routes/auth.js'
import googleRoutes from './routes/google.js'
import meRoutes from './routes/me.js'

export default defineFeature({
  name: 'auth',
  errors: AUTH_ERROR_CODES,
  routes: [
    { scope: 'root', prefix: '/auth', plugin: authRoutes },
    { scope: 'root', prefix: '/auth/google', plugin: googleRoutes },
    { scope: 'root', prefix: '/me', plugin: meRoutes },
  ],
  jobs: ACCOUNT_JOBS,
})
