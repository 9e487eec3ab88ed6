/** pino options shared by the server, the worker and the CLI: pretty on a terminal in dev, JSON otherwise, secrets redacted. */
import type { LoggerOptions } from 'pino'
import type { Config } from '../config.js'
import { serializeError } from './error-log.js'

export function loggerOptions(config: Pick<Config, 'env' | 'logLevel'>): LoggerOptions {
  const pretty = config.env !== 'production' && process.stdout.isTTY
  return {
    level: config.logLevel,
    redact: {
      paths: ['req.headers.cookie', 'req.headers.authorization', 'req.headers["stripe-signature"]', '*.password', '*.passwordHash', '*.dbUrl'],
      censor: '[redacted]',
    },
    // A failed query's message and detail carry its parameters (hashes, emails): log SQLSTATE and table only.
    serializers: { err: serializeError },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  }
}
