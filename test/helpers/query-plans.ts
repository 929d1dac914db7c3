/**
 * The query plans of the SQL a piece of code really runs: `capturePlans(storage)` gives a Storage whose Kysely
 * records every query it executes (a plugin, so query builders and `sql` templates alike), and `plans()`
 * runs EXPLAIN (ANALYZE) on each recorded query with its parameters. For tests that a query at scale
 * uses an index or reads a bounded number of rows, asserted on the plan, never on time.
 */
import { CompiledQuery, type KyselyPlugin, type RootOperationNode } from 'kysely'
import type { Storage } from '../../src/storage/db.js'

/** One node of an EXPLAIN (FORMAT JSON) plan, with the fields the tests read. */
export interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Relation Name'?: string
  'Actual Rows'?: number
  'Actual Loops'?: number
  'Rows Removed by Filter'?: number
  'Rows Removed by Index Recheck'?: number
  Plans?: PlanNode[]
}

export interface QueryPlan {
  sql: string
  root: PlanNode
  /** Every node of the plan, depth first. */
  nodes: PlanNode[]
}

export interface CapturedStorage {
  storage: Storage
  /** Forgets the queries recorded so far. */
  clear(): void
  /**
   * EXPLAIN (ANALYZE, FORMAT JSON) of every read recorded since the last clear(), in order; `settings` are planner
   * settings for the EXPLAIN only (SET LOCAL in its own transaction, e.g. `{ enable_nestloop: 'off' }`).
   */
  plans(settings?: Record<string, string>): Promise<QueryPlan[]>
}

/** Rows a plan read from `relation`'s heap or indexes: emitted plus filtered out, times loops. */
export function rowsRead(plan: QueryPlan, relation: string): number {
  return plan.nodes
    .filter((n) => n['Relation Name'] === relation)
    .reduce((sum, n) => sum + ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0) + (n['Rows Removed by Index Recheck'] ?? 0)) * (n['Actual Loops'] ?? 1), 0)
}

/** The indexes a plan scans. */
export function indexesUsed(plan: QueryPlan): string[] {
  return plan.nodes.flatMap((n) => (n['Index Name'] ? [n['Index Name']] : []))
}

export function capturePlans(storage: Storage): CapturedStorage {
  if (storage.kind !== 'postgres') throw new Error('query plans are read from PostgreSQL')
  let captured: RootOperationNode[] = []
  const plugin: KyselyPlugin = {
    transformQuery: ({ node }) => {
      captured.push(node)
      return node
    },
    transformResult: async ({ result }) => result,
  }
  const db = storage.db.withPlugin(plugin)
  return {
    storage: { ...storage, db },
    clear: () => {
      captured = []
    },
    async plans(settings = {}) {
      const out: QueryPlan[] = []
      for (const node of captured) {
        const compiled = storage.db.getExecutor().compileQuery(node, { queryId: 'explain' } as never)
        // ANALYZE runs the statement: only reads are explained (a WITH that writes is left out too).
        if (!/^\s*(select|with)\b/i.test(compiled.sql) || /^\s*with\b[\s\S]*\b(insert|update|delete)\b/i.test(compiled.sql)) continue
        const res = await storage.db.transaction().execute(async (trx) => {
          for (const [name, value] of Object.entries(settings)) await trx.executeQuery(CompiledQuery.raw(`SET LOCAL ${name} = ${value}`))
          return trx.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(CompiledQuery.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${compiled.sql}`, [...compiled.parameters]))
        })
        const root = res.rows[0]!['QUERY PLAN'][0].Plan
        out.push({ sql: compiled.sql, root, nodes: flatten(root) })
      }
      captured = []
      return out
    },
  }
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)]
}
