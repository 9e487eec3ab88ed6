/** The public site's content: a Markdown blog with feeds, a sitemap and robots.txt (README "Content"). */
import { defineFeature } from '../../core/feature.js'
import { CONTENT_ERROR_CODES } from './error-codes.js'
import contentRoutes from './routes.js'

export default defineFeature({
  name: 'content',
  errors: CONTENT_ERROR_CODES,
  routes: [{ scope: 'root', prefix: '', plugin: contentRoutes }],
})
