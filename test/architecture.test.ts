/**
 * The layout's rules, checked on the real import graph of src/ (biome's noRestrictedImports in
 * `npm run lint` says the same at the import line; this test also sees cycles):
 *   - src/core imports no feature and nothing of the composition root (src/*.ts);
 *   - a feature imports another feature only through its index.ts, and never the composition root;
 *   - no import cycle between the top-level parts (composition root, core, features) nor between features.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const SPECIFIER = /(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : name.endsWith('.ts') ? [path] : []
  })
}

/** Every relative import inside src/, as repo-relative paths of .ts files. */
const edges = files(join(root, 'src')).flatMap((file) => {
  const from = relative(root, file)
  return [...readFileSync(file, 'utf8').matchAll(SPECIFIER)]
    .map((m) => normalize(join(dirname(from), m[1]!)).replace(/\.js$/, '.ts'))
    .filter((to) => to.startsWith('src/'))
    .map((to) => ({ from, to }))
})

/** 'root' (src/*.ts), 'core', or 'feature:<name>'. */
const part = (path: string) => {
  const [, top, name] = path.split('/')
  if (top === 'core') return 'core'
  if (top === 'features') return name!.endsWith('.ts') ? 'features-list' : `feature:${name}`
  return 'root'
}

function cycles(graph: Map<string, Set<string>>): string[][] {
  const found: string[][] = []
  const visit = (node: string, path: string[]) => {
    for (const next of graph.get(node) ?? []) {
      if (next === path[0]) found.push([...path, next])
      else if (!path.includes(next) && next > path[0]!) visit(next, [...path, next])
    }
  }
  for (const node of graph.keys()) visit(node, [node])
  return found
}

describe('architecture', () => {
  it('sees the import graph', () => {
    expect(edges.length).toBeGreaterThan(300)
    expect(edges.some((e) => part(e.from) === 'core')).toBe(true)
  })

  it('core imports no feature and nothing of the composition root', () => {
    const bad = edges.filter((e) => part(e.from) === 'core' && part(e.to) !== 'core')
    expect(bad).toEqual([])
  })

  it('features import each other only through index.ts, and never the composition root', () => {
    const bad = edges.filter((e) => {
      const from = part(e.from)
      const to = part(e.to)
      if (!from.startsWith('feature:')) return false
      if (to === 'root' || to === 'features-list') return true
      return to.startsWith('feature:') && to !== from && !e.to.endsWith('/index.ts')
    })
    expect(bad).toEqual([])
  })

  it('has no import cycle between the top-level parts or between features', () => {
    const graph = new Map<string, Set<string>>()
    for (const { from, to } of edges) {
      const [a, b] = [part(from), part(to)]
      if (a === b) continue
      graph.set(a, (graph.get(a) ?? new Set()).add(b))
    }
    expect(cycles(graph)).toEqual([])
  })
})
