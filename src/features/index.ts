/**
 * The kit's features, in mount order. Adding a feature is one folder under src/features/ and one line
 * here (README "Extending"). The core never imports this file: src/services.ts and src/app.ts pass the
 * list in.
 */
import type { Feature } from '../core/feature.js'
import { assembleLifecycle } from '../core/tenancy/lifecycle.js'
import admin from './admin/feature.js'
import apiKeys from './api-keys/feature.js'
import auditLog from './audit-log/feature.js'
import auth from './auth/feature.js'
import billing from './billing/feature.js'
import content from './content/feature.js'
import inboundWebhooks from './inbound-webhooks/feature.js'
import jobs from './jobs/feature.js'
import members from './members/feature.js'
import projects from './projects/feature.js'
import realtime from './realtime/feature.js'
import settings from './settings/feature.js'
import tenants from './tenants/feature.js'
import webhooks from './webhooks/feature.js'

export const FEATURES = [
  auth,
  members,
  tenants,
  projects,
  settings,
  jobs,
  billing,
  apiKeys,
  auditLog,
  admin,
  inboundWebhooks,
  webhooks,
  realtime,
  content,
] as const satisfies readonly Feature[]

/** What happens to a tenant, features' steps included: the map every process runs (services.lifecycle). */
export const KIT_LIFECYCLE = assembleLifecycle(FEATURES.flatMap((f: Feature) => f.lifecycle ?? []))
