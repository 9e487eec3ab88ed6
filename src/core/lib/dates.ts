/** Timestamps as the API and raw SQL carry them: ISO 8601 text, null for no date. */
export const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null)
