/** The app's version, from its package.json (found walking up: src/… in development, dist/src/… in the image). */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function readVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown'
    if (dirname(dir) === dir) return 'unknown'
  }
}

export const APP_VERSION = readVersion()
