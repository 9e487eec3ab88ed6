/** The example tenant resource: projects in each tenant's own database (list, CRUD, CSV/JSONL export). */
import { defineFeature } from '../../core/feature.js'
import { PROJECT_ERROR_CODES } from './error-codes.js'
import { PROJECT_JOBS } from './jobs.js'
import { PROJECT_PERMISSIONS } from './permissions.js'
import projectRoutes from './routes.js'

export default defineFeature({
  name: 'projects',
  errors: PROJECT_ERROR_CODES,
  routes: [{ scope: 'tenant', prefix: '/projects', plugin: projectRoutes }],
  jobs: PROJECT_JOBS,
  permissions: PROJECT_PERMISSIONS,
})
