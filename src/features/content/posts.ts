/**
 * Blog posts from `<CONTENT_DIR>/blog/*.md` (seed fh-saas `PostLoader`): YAML front matter (gray-matter)
 * checked field by field, the body rendered once at load (markdown.ts), newest first.
 *
 * Content ships with the deploy, so a broken post fails loudly: `loadPosts` throws a ContentError naming
 * the file and the field, which stops a production start (and CI) instead of serving a half-broken blog.
 * In development the folder is watched and reloaded on change; a broken edit is logged and the last good
 * set keeps being served.
 */
import { watch } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import matter from 'gray-matter'
import type { FastifyBaseLogger } from 'fastify'
import { type Heading, plainText, renderMarkdown } from './markdown.js'

export interface Post {
  slug: string
  title: string
  description: string
  date: Date
  updated: Date | undefined
  author: string | undefined
  tags: string[]
  draft: boolean
  /** Absolute URL or site path of the social card image. */
  image: string | undefined
  html: string
  headings: Heading[]
  readingMinutes: number
}

export class ContentError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`)
    this.name = 'ContentError'
  }
}

export const SLUG = /^[a-z0-9]+(?:-[a-z0-9]+)*$/
export const TAG = /^[a-z0-9]+(?:-[a-z0-9]+)*$/
const WORDS_PER_MINUTE = 220
const KNOWN_FIELDS = new Set(['title', 'description', 'date', 'updated', 'author', 'tags', 'draft', 'image'])

function asDate(file: string, field: string, value: unknown): Date {
  // YAML turns `2026-11-30` into a Date already; a quoted string is parsed the same way.
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined
  if (!date || Number.isNaN(date.getTime()))
    throw new ContentError(file, `${field} must be a date (YYYY-MM-DD or ISO 8601), got ${JSON.stringify(value)}`)
  return date
}

function asText(file: string, field: string, value: unknown, required: boolean): string | undefined {
  if (value === undefined || value === null) {
    if (required) throw new ContentError(file, `${field} is required in the front matter`)
    return undefined
  }
  if (typeof value !== 'string' || value.trim() === '') throw new ContentError(file, `${field} must be a non-empty string`)
  return value.trim()
}

/** One post from its file name and text; throws ContentError on anything wrong. */
export function parsePost(file: string, text: string): Post {
  const slug = file.replace(/\.md$/, '')
  if (!SLUG.test(slug))
    throw new ContentError(file, 'the file name must be a slug: lowercase letters, digits and single dashes, ending in .md')
  let parsed: matter.GrayMatterFile<string>
  try {
    // A fresh options object: gray-matter caches by content when given none, which keeps every post's text alive.
    parsed = matter(text, {})
  } catch (err) {
    throw new ContentError(file, `front matter is not valid YAML: ${(err as Error).message}`)
  }
  const fm = parsed.data as Record<string, unknown>
  const unknown = Object.keys(fm).filter((k) => !KNOWN_FIELDS.has(k))
  if (unknown.length)
    throw new ContentError(file, `unknown front matter field(s): ${unknown.join(', ')} (known: ${[...KNOWN_FIELDS].join(', ')})`)
  const tags = fm.tags ?? []
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string' || !TAG.test(t)))
    throw new ContentError(file, 'tags must be a list of lowercase slugs (e.g. [release, how-to])')
  if (fm.draft !== undefined && typeof fm.draft !== 'boolean') throw new ContentError(file, 'draft must be true or false')
  const image = asText(file, 'image', fm.image, false)
  if (image && !/^(https:\/\/|\/)/.test(image)) throw new ContentError(file, 'image must be an https:// URL or a path starting with /')

  const { html, headings } = renderMarkdown(parsed.content)
  const text$ = plainText(html)
  const words = text$ ? text$.split(' ').length : 0
  return {
    slug,
    title: asText(file, 'title', fm.title, true)!,
    description: asText(file, 'description', fm.description, false) ?? (text$.length > 160 ? `${text$.slice(0, 157).trimEnd()}…` : text$),
    date: asDate(file, 'date', fm.date),
    updated: fm.updated === undefined ? undefined : asDate(file, 'updated', fm.updated),
    author: asText(file, 'author', fm.author, false),
    tags: [...new Set(tags as string[])],
    draft: fm.draft === true,
    image,
    html,
    headings,
    readingMinutes: Math.max(1, Math.round(words / WORDS_PER_MINUTE)),
  }
}

/** Every post of `<dir>/blog`, newest first (a missing folder is an empty blog). */
export async function loadPosts(dir: string): Promise<Post[]> {
  const folder = join(dir, 'blog')
  const files = await readdir(folder).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[]
    throw err
  })
  const posts = await Promise.all(
    files.filter((f) => f.endsWith('.md')).map(async (f) => parsePost(f, await readFile(join(folder, f), 'utf8'))),
  )
  return posts.sort((a, b) => b.date.getTime() - a.date.getTime() || a.slug.localeCompare(b.slug))
}

/** The posts readers see: drafts only where `includeDrafts` (development). */
export class PostLibrary {
  private all: Post[] = []
  private bySlug = new Map<string, Post>()
  private listeners: (() => void)[] = []

  constructor(private readonly includeDrafts: boolean) {}

  set(posts: Post[]) {
    this.all = posts.filter((p) => this.includeDrafts || !p.draft)
    this.bySlug = new Map(this.all.map((p) => [p.slug, p]))
    for (const fn of this.listeners) fn()
  }

  /** Called after every reload (caches of rendered pages hang off it). */
  onChange(fn: () => void) {
    this.listeners.push(fn)
  }

  list(tag?: string): Post[] {
    return tag ? this.all.filter((p) => p.tags.includes(tag)) : this.all
  }

  get(slug: string): Post | undefined {
    return this.bySlug.get(slug)
  }
}

/**
 * Reloads `library` whenever a file under `<dir>/blog` changes (development); `onReload` hears each
 * outcome (an error when the edit was refused). Returns the stop function.
 */
export function watchPosts(dir: string, library: PostLibrary, log: FastifyBaseLogger, onReload?: (err?: unknown) => void): () => void {
  let timer: NodeJS.Timeout | undefined
  const reload = () => {
    clearTimeout(timer)
    // Editors write a file in several steps: reload once they are done.
    timer = setTimeout(() => {
      loadPosts(dir).then(
        (posts) => {
          library.set(posts)
          log.info({ posts: posts.length }, 'blog reloaded')
          onReload?.()
        },
        (err) => {
          log.error({ err }, 'blog not reloaded: the last good posts are still served')
          onReload?.(err)
        },
      )
    }, 100)
  }
  try {
    const watcher = watch(join(dir, 'blog'), reload)
    watcher.on('error', (err) => log.warn({ err }, 'blog watcher stopped'))
    return () => {
      clearTimeout(timer)
      watcher.close()
    }
  } catch (err) {
    log.warn({ err, dir }, 'blog folder not watched (it does not exist yet)')
    return () => {}
  }
}
