/**
 * Realistic app.bsky records (posts with facets and replies, likes, follows,
 * reposts, profiles) from a seeded RNG, so corpora are reproducible in shape.
 */

/** mulberry32: small, fast, deterministic. */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive)
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from empty list')
    return items[this.int(items.length)] as T
  }
  chance(p: number): boolean {
    return this.next() < p
  }
}

export interface StrongRef {
  uri: string
  cid: string
}

const WORDS = [
  'relay', 'firehose', 'sky', 'post', 'morning', 'coffee', 'cat', 'garden', 'train', 'code', 'river', 'music',
  'weekend', 'photo', 'protocol', 'server', 'rain', 'book', 'bread', 'mountain', 'bike', 'night', 'city', 'tea',
  'hello', 'world', 'today', 'finally', 'really', 'great', 'new', 'small', 'quiet', 'bright', 'blue', 'open',
]
const LANGS = ['en', 'en', 'en', 'ja', 'pt', 'de', 'es', 'fr'] as const

function sentence(rng: Rng, minWords: number, maxWords: number): string {
  const n = minWords + rng.int(maxWords - minWords + 1)
  const words: string[] = []
  for (let i = 0; i < n; i++) words.push(rng.pick(WORDS))
  return words.join(' ')
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

export function postRecord(rng: Rng, createdAt: string, opts: { replyTo?: { root: StrongRef; parent: StrongRef }; mentionDid?: string } = {}): Record<string, unknown> {
  let text = sentence(rng, 3, 40)
  const record: Record<string, unknown> = { $type: 'app.bsky.feed.post', text, createdAt, langs: [rng.pick(LANGS)] }
  const facets: unknown[] = []
  if (rng.chance(0.25)) {
    const url = `https://example.com/${sentence(rng, 1, 3).replace(/ /g, '-')}`
    const byteStart = utf8Length(text) + 1
    text = `${text} ${url}`
    facets.push({
      $type: 'app.bsky.richtext.facet',
      index: { byteStart, byteEnd: byteStart + utf8Length(url) },
      features: [{ $type: 'app.bsky.richtext.facet#link', uri: url }],
    })
  }
  if (opts.mentionDid && rng.chance(0.5)) {
    const mention = '@someone.test'
    const byteStart = utf8Length(text) + 1
    text = `${text} ${mention}`
    facets.push({
      $type: 'app.bsky.richtext.facet',
      index: { byteStart, byteEnd: byteStart + utf8Length(mention) },
      features: [{ $type: 'app.bsky.richtext.facet#mention', did: opts.mentionDid }],
    })
  }
  record.text = text
  if (facets.length > 0) record.facets = facets
  if (opts.replyTo) record.reply = opts.replyTo
  return record
}

export function likeRecord(subject: StrongRef, createdAt: string): Record<string, unknown> {
  return { $type: 'app.bsky.feed.like', subject, createdAt }
}

export function repostRecord(subject: StrongRef, createdAt: string): Record<string, unknown> {
  return { $type: 'app.bsky.feed.repost', subject, createdAt }
}

export function followRecord(subjectDid: string, createdAt: string): Record<string, unknown> {
  return { $type: 'app.bsky.graph.follow', subject: subjectDid, createdAt }
}

export function profileRecord(rng: Rng): Record<string, unknown> {
  return { $type: 'app.bsky.actor.profile', displayName: sentence(rng, 1, 3), description: sentence(rng, 5, 25) }
}
