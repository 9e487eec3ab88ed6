/** Slug rules shared by provisioning and the routes. */
import { randomBytes } from 'node:crypto'

/**
 * A personal tenant's slug from an email: "ada.lovelace@x.com" → "ada-lovelace-3f9a". `suffixBytes`
 * random bytes (hex) keep common local parts ("info", "john") apart; callers retry a taken slug with
 * more of them. The base is at most 40 characters, so up to 11 bytes fit the 63-character limit.
 */
export function personalTenantSlug(email: string, suffixBytes = 2, random: (n: number) => Buffer = randomBytes): string {
  const base = (email.split('@')[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
  return `${base.length >= 2 ? base : 'team'}-${random(suffixBytes).toString('hex')}`
}
