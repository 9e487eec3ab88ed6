/**
 * The worked example: GitHub's webhooks (https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
 * GitHub signs the raw body with the webhook's secret, HMAC-SHA256 as hex after `sha256=`, in
 * X-Hub-Signature-256; X-GitHub-Delivery is the delivery's GUID (a redelivery from GitHub's UI repeats it),
 * X-GitHub-Event its type. Set GITHUB_WEBHOOK_SECRET and point the webhook at https://<host>/webhooks/github.
 *
 * The handler only logs what arrived: replace it with what your product does with pushes, issues, installations…
 */
import { defineInboundWebhook, inboundWebhookJob } from './inbound.js'

export const githubWebhook = defineInboundWebhook({
  name: 'github',
  secret: (config) => config.webhooks.githubSecret,
  header: 'x-hub-signature-256',
  encoding: 'hex',
  prefix: 'sha256=',
  eventId: (req) => req.headers['x-github-delivery'] as string | undefined,
  eventType: (req) => req.headers['x-github-event'] as string | undefined,
  job: 'inbound-webhooks.github',
})

export const processGithubEvent = inboundWebhookJob(async (ctx, event) => {
  const action = (event.json as { action?: unknown } | undefined)?.action
  ctx.logger.info({ eventId: event.eventId, eventType: event.eventType, action }, 'github webhook event')
  return { eventType: event.eventType, action: typeof action === 'string' ? action : null }
})
