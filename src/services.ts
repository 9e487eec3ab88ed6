/**
 * The composition root: the core's services with the kit's features (src/features/index.ts), for the
 * HTTP app, the worker and the CLI alike, so each process knows every job, job dependency and
 * lifecycle step. Tests and benchmarks build their services here too.
 */
import type { Logger } from 'pino'
import type { Config } from './core/config.js'
import { createCoreServices, type ServiceOptions, type Services } from './core/core-services.js'
import { FEATURES } from './features/index.js'

export type { ServiceOptions, Services }

export function createServices(config: Config, logger: Logger, opts: ServiceOptions = {}): Services {
  return createCoreServices(config, logger, { features: FEATURES, ...opts })
}
