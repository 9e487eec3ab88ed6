/**
 * Money as integers of the currency's minor unit (cents for USD, yen for JPY, fils for KWD): never floats
 * in the database. `toCents('$1,150.00') === 115000`; `fromCents(115000) === '$1,150.00'`.
 *
 * Parsing is strict: a string that is not an amount (`'12abc'`, `'1.2.3'`, `''`), more decimals than the
 * currency has (`'1.005'` in USD), or a value past Number.MAX_SAFE_INTEGER is an error with code
 * INVALID_MONEY, never NaN and never a silent rounding.
 */
import { badRequest } from './errors.js'

export interface MoneyOptions {
  /** ISO 4217 code; decides the minor unit (default USD: 2 decimals). */
  currency?: string
  /** Only for fromCents: how the amount is written (default en-US). */
  locale?: string
}

const formatters = new Map<string, Intl.NumberFormat>()

function formatter(currency: string, locale: string): Intl.NumberFormat {
  const key = `${locale}|${currency}`
  let f = formatters.get(key)
  if (!f) {
    try {
      f = new Intl.NumberFormat(locale, { style: 'currency', currency })
    } catch {
      throw invalid(`unknown currency or locale: ${currency} / ${locale}`)
    }
    formatters.set(key, f)
  }
  return f
}

const invalid = (message: string) => badRequest('INVALID_MONEY', message)

/** Decimals of the currency's minor unit, from the platform's ISO 4217 data (USD 2, JPY 0, KWD 3). */
export function minorUnits(currency = 'USD'): number {
  if (!/^[A-Za-z]{3}$/.test(currency)) throw invalid(`not an ISO 4217 currency code: ${JSON.stringify(currency)}`)
  return formatter(currency.toUpperCase(), 'en-US').resolvedOptions().maximumFractionDigits ?? 2
}

// An optional sign, an optional symbol or code, digits with optional thousands separators, optional decimals.
// Accepted: "1150", "1,150.00", "$1,150.00", "-$5.25", "($5.25)", "USD 12.5", "€3". Separators must group by 3.
const AMOUNT = /^(?<neg>-)?\s*(?:[^\d\s.,()-]{1,3}\s?)?(?<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?<frac>\d+))?$/

/** An amount (string or number) in the currency's minor unit, as an integer. */
export function toCents(input: string | number, opts: MoneyOptions = {}): number {
  const digits = minorUnits(opts.currency)
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw invalid(`not a finite amount: ${input}`)
    const scaled = input * 10 ** digits
    const cents = Math.round(scaled)
    // 19.99 * 100 = 1998.9999999999998: accept float noise, refuse a real extra decimal (1.005).
    if (Math.abs(scaled - cents) > 1e-6) throw invalid(`${input} has more than ${digits} decimals`)
    return safe(cents, input)
  }
  if (typeof input !== 'string') throw invalid('an amount is a string or a number')
  let text = input.trim()
  let negative = false
  if (/^\(.*\)$/.test(text)) {
    negative = true // accounting notation: ($5.25)
    text = text.slice(1, -1).trim()
  }
  const m = AMOUNT.exec(text)
  if (!m?.groups) throw invalid(`not an amount: ${JSON.stringify(input)}`)
  const { neg, int, frac = '' } = m.groups
  if (neg) {
    if (negative) throw invalid(`not an amount: ${JSON.stringify(input)}`)
    negative = true
  }
  if (frac.length > digits) throw invalid(`${JSON.stringify(input)} has more than ${digits} decimals`)
  const cents = Number((int ?? '').replaceAll(',', '') + frac.padEnd(digits, '0'))
  return safe(negative ? -cents : cents, input)
}

function safe(cents: number, input: unknown): number {
  if (!Number.isSafeInteger(cents)) throw invalid(`amount out of range: ${String(input)}`)
  return cents === 0 ? 0 : cents // (no -0)
}

/** An integer amount in the minor unit, written for people: fromCents(115000) === '$1,150.00'. */
export function fromCents(cents: number, opts: MoneyOptions = {}): string {
  if (!Number.isSafeInteger(cents)) throw invalid(`cents must be a safe integer, got ${String(cents)}`)
  const currency = (opts.currency ?? 'USD').toUpperCase()
  const digits = minorUnits(currency)
  return formatter(currency, opts.locale ?? 'en-US').format(cents / 10 ** digits)
}
