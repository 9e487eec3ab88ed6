/**
 * Inbound webhooks from any provider (inbound.ts): signed deliveries recorded once in a ledger and
 * processed by a job. INBOUND_WEBHOOKS lists the providers; add yours with its job (github.ts is the model).
 */
import { defineFeature } from '../../core/feature.js'
import type { Jobs } from '../../core/jobs/registry.js'
import { INBOUND_WEBHOOK_ERROR_CODES } from './error-codes.js'
import { githubWebhook, processGithubEvent } from './github.js'
import { inboundWebhookRoutes } from './inbound.js'
import { inboundTrimLedger } from './trim-job.js'
import { schedule } from '../../core/jobs/schedules.js'

export const INBOUND_WEBHOOKS = [githubWebhook] as const

export const INBOUND_WEBHOOK_JOBS = {
  'inbound-webhooks.github': processGithubEvent,
  'inbound-webhooks.trim_ledger': inboundTrimLedger,
}

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof INBOUND_WEBHOOK_JOBS> {}
}

export default defineFeature({
  name: 'inbound-webhooks',
  errors: INBOUND_WEBHOOK_ERROR_CODES,
  routes: [
    {
      scope: 'root',
      prefix: '/webhooks',
      plugin: inboundWebhookRoutes,
      options: (fastify, { config }) => ({ config, host: fastify.host, outbox: fastify.services.outbox, webhooks: INBOUND_WEBHOOKS }),
    },
  ],
  jobs: INBOUND_WEBHOOK_JOBS,
  schedules: [
    schedule({
      name: 'inbound-webhooks.trim_ledger',
      cron: '50 3 * * *',
      job: 'inbound-webhooks.trim_ledger',
      payload: {},
      description: 'Deletes inbound webhook ledger rows processed and received more than `WEBHOOK_RETENTION_DAYS` (30) ago; received and failed ones stay',
    }),
  ],
})
