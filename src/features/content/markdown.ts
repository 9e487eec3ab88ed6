/**
 * Markdown → safe HTML for posts (seed fh-saas `MarkdownEngine`): GitHub-flavoured Markdown (marked),
 * headings with stable GitHub-style ids and a `#` anchor, the headings list for the table of contents,
 * fenced code highlighted by highlight.js, and the whole output passed through sanitize-html, so a post
 * (or a pasted snippet in one) can't carry a script, an event handler or a `javascript:` link.
 */
import GithubSlugger from 'github-slugger'
import hljs from 'highlight.js'
import { Marked, type Tokens } from 'marked'
import sanitizeHtml from 'sanitize-html'

export interface Heading {
  depth: number
  text: string
  id: string
}

export interface Rendered {
  html: string
  /** Every heading, in order (the table of contents shows depths 2 and 3). */
  headings: Heading[]
}

export const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

const SANITIZE: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags, 'img', 'del', 'ins', 'input'],
  allowedAttributes: {
    a: ['href', 'title', 'class', 'aria-label', 'aria-hidden'],
    img: ['src', 'alt', 'title', 'width', 'height', 'loading'],
    h1: ['id'],
    h2: ['id'],
    h3: ['id'],
    h4: ['id'],
    h5: ['id'],
    h6: ['id'],
    code: ['class'],
    span: ['class'],
    th: ['align'],
    td: ['align'],
    ol: ['start'],
    input: ['type', 'checked', 'disabled'],
  },
  allowedClasses: { code: ['hljs', 'language-*'], span: ['hljs-*'], a: ['anchor'] },
  allowedSchemes: ['http', 'https', 'mailto'],
  allowedSchemesByTag: { img: ['http', 'https', 'data'] },
  // Task list checkboxes are the only inputs GFM makes; anything else named input is dropped.
  exclusiveFilter: (frame) => frame.tag === 'input' && frame.attribs.type !== 'checkbox',
}

/** Renders one document. A fresh slugger per document: ids are unique within it and stable across renders. */
export function renderMarkdown(source: string): Rendered {
  const slugger = new GithubSlugger()
  const headings: Heading[] = []
  const marked = new Marked({ gfm: true })
  marked.use({
    renderer: {
      heading(this: { parser: { parseInline(t: Tokens.Generic[]): string } }, { tokens, depth, text }: Tokens.Heading) {
        const inner = this.parser.parseInline(tokens)
        const plain = sanitizeHtml(inner, { allowedTags: [], allowedAttributes: {} }).trim() || text
        const id = slugger.slug(plain)
        headings.push({ depth, text: plain, id })
        return `<h${depth} id="${id}"><a class="anchor" href="#${id}" aria-label="Link to this section">#</a> ${inner}</h${depth}>\n`
      },
      code({ text, lang }: Tokens.Code) {
        const language = lang?.trim().split(/\s+/)[0]?.toLowerCase()
        if (language && hljs.getLanguage(language)) {
          const { value } = hljs.highlight(text, { language, ignoreIllegals: true })
          return `<pre><code class="hljs language-${language}">${value}</code></pre>\n`
        }
        return `<pre><code class="hljs">${escapeHtml(text)}</code></pre>\n`
      },
    },
  })
  const html = marked.parse(source, { async: false })
  return { html: sanitizeHtml(html, SANITIZE), headings }
}

/** Plain text of rendered HTML (descriptions, feed summaries, reading time). */
export const plainText = (html: string) =>
  sanitizeHtml(html, { allowedTags: [], allowedAttributes: {} })
    .replace(/&[a-z]+;|&#\d+;/gi, ' ')
    .replace(/\s+/g, ' ')
    .trim()
