//! The batch scheduler's pass, as I/O: under each batch row's lock (`SKIP LOCKED`, so
//! replicas share batches), it loads what `domain::batch::settle` asks for and writes the
//! plan it returns, in one transaction. The settled flag makes a crashed pass simply
//! happen again; waiters are woken after commit.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};

use super::{
    decode_batch, decode_edge, stage_batch, stage_changes, status_list, BATCH_COLUMNS,
    KEYS_PER_QUERY,
};
use crate::domain::batch::settle::{self, Graph, Snapshot, OUTCOMES_PER_PASS};
use crate::domain::batch::{Batch, Edge, LIVE};
use crate::domain::ids::BatchId;
use crate::domain::operation::{Operation, OperationStatus};
use crate::store::operations::{decode_operation, COLUMNS};
use crate::store::signals::Announce;
use crate::store::{key_chunks, one_of, Batches, Result};

/// Batches one pass looks at.
const BATCHES_PER_PASS: usize = 64;

impl Batches {
    /// One pass of the batch scheduler over the batches whose members reached a final
    /// state. Returns how many member outcomes it acted on (0: nothing to do).
    pub async fn schedule(&self, now: DateTime<Utc>) -> Result<usize> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT batch_id FROM operations WHERE {} LIMIT {BATCHES_PER_PASS}",
            members_to_settle()
        ))
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("batch_id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut tx = self.backend.begin_reusing_plans(&self.pool).await?;
        // Batches another replica is scheduling right now are left to it.
        let (ids_in, binds) = one_of(self.backend, "id", 1, &ids);
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE {ids_in} ORDER BY id{}",
            self.backend.skip_locked()
        );
        let mut query = sqlx::query(&sql);
        for value in binds {
            query = query.bind(value);
        }
        let batches = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(decode_batch)
            .collect::<Result<Vec<_>>>()?;
        let mut acted = 0;
        let mut announce = Announce::default();
        for batch in batches {
            let (n, news) = self.schedule_batch(&mut tx, batch, now).await?;
            acted += n;
            announce.absorb(news);
        }
        tx.commit().await?;
        self.signals.after_commit(announce);
        Ok(acted)
    }

    async fn schedule_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: Batch,
        now: DateTime<Utc>,
    ) -> Result<(usize, Announce)> {
        let snapshot = self.load_snapshot(tx, batch).await?;
        let acted = snapshot.finished.len();
        let mut plan = settle::settle(snapshot, now);

        self.count_down(tx, plan.batch.id, &plan.count_down).await?;
        let settled: Vec<String> = plan.settled.iter().map(|id| id.db()).collect();
        for chunk in key_chunks(self.backend, &settled, KEYS_PER_QUERY) {
            let (ids_in, binds) = one_of(self.backend, "id", 1, chunk);
            let sql = format!("UPDATE operations SET batch_settled = 1 WHERE {ids_in}");
            let mut query = sqlx::query(&sql);
            for value in binds {
                query = query.bind(value);
            }
            query.execute(&mut **tx).await?;
        }
        let (ops, events) = stage_changes(plan.changes, now);
        let mut announce = self.operations.write_changes(tx, &ops, events, now).await?;
        if !plan.batch_events.is_empty() {
            let events = stage_batch(&mut plan.batch, plan.batch_events, now);
            announce.absorb(self.operations.write_events(tx, events, now).await?);
            self.write_batch_row(tx, &plan.batch, false).await?;
        }
        Ok((acted, announce))
    }

    /// What a pass decides from: the finished-unsettled members, the graph around them,
    /// the members it may change (locked), and the counts only when the batch may end.
    async fn load_snapshot(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: Batch,
    ) -> Result<Snapshot> {
        let sql = format!(
            "SELECT {COLUMNS} FROM operations
             WHERE batch_id = $1 AND batch_settled = 0 AND status IN ({})
             ORDER BY id LIMIT {OUTCOMES_PER_PASS}",
            terminal_list()
        );
        let finished: Vec<Operation> = sqlx::query(&sql)
            .bind(batch.id.db())
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(decode_operation)
            .collect::<Result<_>>()?;
        let needed = settle::graph_needed(&finished);
        let graph = Graph {
            below_failed: self.edges_below(tx, batch.id, &needed.failed).await?,
            out_of_completed: self.edges_out_of(tx, batch.id, &needed.completed).await?,
        };
        let members = match settle::members_needed(&batch, &finished, &graph) {
            Some(needed) => {
                self.members_in(tx, batch.id, needed.statuses, needed.keys.as_deref())
                    .await?
            }
            None => Vec::new(),
        };
        // Counting every member is only worth it once none can change any more.
        let counts = if settle::may_end(&batch, &finished)
            && !self
                .any_other_unsettled(tx, batch.id, finished.len())
                .await?
        {
            let mut counts = self.member_counts(&mut **tx, &[batch.id]).await?;
            Some(counts.remove(&batch.id).unwrap_or_default())
        } else {
            None
        };
        Ok(Snapshot {
            batch,
            finished,
            graph,
            members,
            counts,
        })
    }

    /// Every edge below `roots`, breadth first, level by level in the order read.
    async fn edges_below(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        roots: &[String],
    ) -> Result<Vec<Edge>> {
        let mut edges = Vec::new();
        let mut reached: HashSet<String> = roots.iter().cloned().collect();
        let mut frontier: Vec<String> = roots.to_vec();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for chunk in key_chunks(self.backend, &frontier, KEYS_PER_QUERY) {
                let (keys_in, binds) = one_of(self.backend, "upstream_key", 2, chunk);
                let sql = format!(
                    "SELECT upstream_key, downstream_key FROM batch_edges WHERE batch_id = $1 AND {keys_in}"
                );
                let mut query = sqlx::query(&sql).bind(batch.db());
                for value in binds {
                    query = query.bind(value);
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let edge = decode_edge(&row)?;
                    if reached.insert(edge.downstream.clone()) {
                        next.push(edge.downstream.clone());
                    }
                    edges.push(edge);
                }
            }
            frontier = next;
        }
        Ok(edges)
    }

    /// The edges out of `keys`, each with its downstream member's `waiting`.
    async fn edges_out_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        keys: &[String],
    ) -> Result<Vec<(Edge, i64)>> {
        let mut edges = Vec::new();
        for chunk in key_chunks(self.backend, keys, KEYS_PER_QUERY) {
            let (keys_in, binds) = one_of(self.backend, "e.upstream_key", 2, chunk);
            let sql = format!(
                "SELECT e.upstream_key, e.downstream_key, m.waiting FROM batch_edges e
                 JOIN batch_members m ON m.batch_id = e.batch_id AND m.member_key = e.downstream_key
                 WHERE e.batch_id = $1 AND {keys_in}"
            );
            let mut query = sqlx::query(&sql).bind(batch.db());
            for value in binds {
                query = query.bind(value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                edges.push((decode_edge(&row)?, row.try_get::<i64, _>("waiting")?));
            }
        }
        Ok(edges)
    }

    /// Whether any member of the batch may still change state, or finished after this
    /// pass read the `read` finished ones (it is settled by the next pass, which then
    /// ends the batch: so no member's events come after the batch's end).
    async fn any_other_unsettled(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        read: usize,
    ) -> Result<bool> {
        // Live, or finished and unsettled, counted apart: each is a partial index's
        // condition, read in index order up to the limit (as one `OR batch_settled = 0`
        // PostgreSQL scanned the whole table, every batch's operations, on each pass; as
        // one OR of both it gathered every live member before stopping). The two never
        // overlap, so the sum passes `read` exactly when their union does.
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM operations WHERE batch_id = $1
                       AND status IN ({}) LIMIT $2) AS live)
                  + (SELECT COUNT(*) FROM (SELECT 1 FROM operations WHERE {} AND batch_id = $1
                       LIMIT $2) AS finished) AS n",
            status_list(&LIVE),
            members_to_settle()
        );
        let n: i64 = sqlx::query(&sql)
            .bind(batch.db())
            .bind(read as i64 + 1)
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
        Ok(n > read as i64)
    }

    /// Lowers members' `waiting` by the given amounts: one statement per distinct amount
    /// (nearly always just 1), many keys each.
    async fn count_down(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: BatchId,
        decrements: &[(String, i64)],
    ) -> Result<()> {
        let mut by_amount: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (key, amount) in decrements {
            by_amount.entry(*amount).or_default().push(key.clone());
        }
        for (amount, keys) in by_amount {
            for chunk in key_chunks(self.backend, &keys, KEYS_PER_QUERY) {
                let (keys_in, binds) = one_of(self.backend, "member_key", 3, chunk);
                let sql = format!(
                    "UPDATE batch_members SET waiting = waiting - $2 WHERE batch_id = $1 AND {keys_in}"
                );
                let mut query = sqlx::query(&sql).bind(batch.db()).bind(amount);
                for value in binds {
                    query = query.bind(value);
                }
                query.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}

/// Batch members that finished and that the scheduler has not acted on yet.
pub(in crate::store) fn members_to_settle() -> String {
    format!(
        "batch_id IS NOT NULL AND batch_settled = 0 AND status IN ({})",
        terminal_list()
    )
}

/// The final operation states, as an SQL list.
fn terminal_list() -> String {
    let terminal: Vec<OperationStatus> = OperationStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    status_list(&terminal)
}
