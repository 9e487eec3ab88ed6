/** Platform administration: Bull Board at /admin/queues, for platform admins. */
import { defineFeature } from '../../core/feature.js'
import adminRoutes from './routes.js'

export default defineFeature({
  name: 'admin',
  routes: [{ scope: 'root', prefix: '/admin', plugin: adminRoutes }],
})
