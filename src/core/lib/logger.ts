/**
 * pino options shared by the server, the worker and the CLI: pretty on a terminal in dev, JSON otherwise,
 * secrets redacted. With LOG_FILE every line also goes, as JSON, to that file (created with its folder,
 * appended to): the terminal or container output stays as it was, the file is for tools that tail one.
 */
import type { LoggerOptions, TransportTargetOptions } from 'pino'
import type { Config } from '../config.js'
import { serializeError } from './error-log.js'

const PRETTY = { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } }

export function loggerOptions(config: Pick<Config, 'env' | 'logLevel'> & Partial<Pick<Config, 'logFile'>>): LoggerOptions {
  const pretty = config.env !== 'production' && process.stdout.isTTY
  return {
    level: config.logLevel,
    redact: {
      paths: ['req.headers.cookie', 'req.headers.authorization', 'req.headers["stripe-signature"]', '*.password', '*.passwordHash', '*.dbUrl'],
      censor: '[redacted]',
    },
    // A failed query's message and detail carry its parameters (hashes, emails): log SQLSTATE and table only.
    serializers: { err: serializeError },
    ...(config.logFile ? { transport: { targets: fileTargets(config.logFile, config.logLevel, pretty) } } : pretty ? { transport: PRETTY } : {}),
  }
}

/** stdout as before (pretty or JSON), plus the file (pino's own file target: asynchronous, off the main thread). */
function fileTargets(file: string, level: string, pretty: boolean): TransportTargetOptions[] {
  return [
    pretty ? { ...PRETTY, level } : { target: 'pino/file', options: { destination: 1 }, level },
    { target: 'pino/file', options: { destination: file, mkdir: true, append: true }, level },
  ]
}
