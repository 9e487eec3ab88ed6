/** What other modules may use: the event types endpoints subscribe to, and the signature format. */
export { WEBHOOK_EVENT_TYPES, type WebhookEventType } from './events.js'
export { standardWebhookHeaders } from './signing.js'
