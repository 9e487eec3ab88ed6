/** What other modules may use of realtime: the event types it streams and their wire shape's ordering. */
export { compareSeq, REALTIME_EVENT_ROLES, type RealtimeEventType } from './events.js'
export { WS_CLOSE_CODES } from './routes.js'
