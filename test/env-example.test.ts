/**
 * .env.example is the documentation of the configuration: it must list exactly the variables of
 * ENV_VARS, each set to its default and with a comment above it, so the docs cannot drift from the code.
 * (No database or Redis here: this file only reads two source files.)
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ENV_VARS } from '../src/core/config.js'

interface Entry {
  key: string
  value: string
  line: number
  commentAbove: boolean
}

function parseEnvExample(text: string): Entry[] {
  const lines = text.split('\n')
  const entries: Entry[] = []
  lines.forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
    if (!match) throw new Error(`.env.example line ${i + 1} is neither a comment nor KEY=value: ${raw}`)
    entries.push({ key: match[1]!, value: match[2]!, line: i + 1, commentAbove: (lines[i - 1] ?? '').trim().startsWith('#') })
  })
  return entries
}

const entries = parseEnvExample(readFileSync(new URL('../.env.example', import.meta.url), 'utf8'))
const defaults: Record<string, string> = Object.fromEntries(Object.entries(ENV_VARS).map(([k, spec]) => [k, spec.default ?? '']))

describe('.env.example', () => {
  it('lists exactly the variables of ENV_VARS', () => {
    const listed = entries.map((e) => e.key)
    const known = Object.keys(ENV_VARS)
    expect({
      missing: known.filter((k) => !listed.includes(k)),
      unknown: listed.filter((k) => !known.includes(k)),
    }).toEqual({ missing: [], unknown: [] })
  })

  it('lists each variable once', () => {
    const keys = entries.map((e) => e.key)
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([])
  })

  it('sets each variable to its default', () => {
    const wrong = entries.filter((e) => e.value !== defaults[e.key]).map((e) => `${e.key}=${e.value} (default "${defaults[e.key]}")`)
    expect(wrong).toEqual([])
  })

  it('documents each variable with a comment directly above it', () => {
    expect(entries.filter((e) => !e.commentAbove).map((e) => `${e.key} (line ${e.line})`)).toEqual([])
  })
})
