/** A tenant's own background jobs, for its admins (`/api/jobs`): list, inspect, submit. */
import { defineFeature } from '../../core/feature.js'
import jobRoutes from './routes.js'

export default defineFeature({
  name: 'jobs',
  routes: [{ scope: 'tenant', prefix: '/jobs', plugin: jobRoutes }],
})
