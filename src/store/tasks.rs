//! The `/v1` facade's list of tasks: the operations of a project that a `TaskFilter`
//! selects, in the order they were submitted, a page at a time.

use sqlx::Row;

use super::operations::{bind_params, Param};
use super::{to_ms, Operations, Result, StoreError};
use crate::domain::ids::{OperationId, ProjectId, TenantId};
use crate::domain::task::{PageStart, StepMatch, TaskFilter, TaskPaging};

/// What one page of the list is made of (`domain::task::page` makes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRows {
    /// Every task the filter selects.
    pub total: u64,
    /// How many of them come before the page's start.
    pub before: u64,
    /// The tasks from the start on, one more than the limit when there are more.
    pub rows: Vec<OperationId>,
}

/// A page's start, the task it starts at found in submission order.
enum Start {
    Offset(u64),
    At(i64, OperationId),
}

/// The conditions of a filter, with the parameters they bind (`$1`, `$2`, … in order).
struct Selection {
    conditions: Vec<String>,
    params: Vec<Param>,
}

impl Selection {
    fn new(tenant: TenantId, project: ProjectId) -> Self {
        Selection {
            conditions: vec!["project_id = $1".into(), "tenant_id = $2".into()],
            params: vec![Param::Text(project.db()), Param::Text(tenant.db())],
        }
    }

    /// Adds a condition whose `?`s are each a new parameter, bound in order.
    fn add(&mut self, condition: &str, params: Vec<Param>) {
        let mut text = String::new();
        let mut pieces = condition.split('?');
        text.push_str(pieces.next().unwrap_or_default());
        for (piece, param) in pieces.zip(params) {
            self.params.push(param);
            text.push_str(&format!("${}{piece}", self.params.len()));
        }
        self.conditions.push(text);
    }

    fn where_clause(&self) -> String {
        self.conditions.join(" AND ")
    }
}

impl Operations {
    /// `Ok(None)`: the page starts at a task (`next`) that is not one of the project's.
    pub async fn task_rows(
        &self,
        tenant: TenantId,
        project: ProjectId,
        filter: &TaskFilter,
        paging: &TaskPaging,
    ) -> Result<Option<TaskRows>> {
        let start = match paging.start {
            PageStart::Offset(n) => Start::Offset(n),
            PageStart::At(id) => match self.queue_order(tenant, project, id).await? {
                Some(order) => Start::At(order, id),
                None => return Ok(None),
            },
        };
        if filter.statuses.is_empty() {
            return Ok(Some(TaskRows {
                total: 0,
                before: 0,
                rows: Vec::new(),
            }));
        }
        let mut selection = Selection::new(tenant, project);
        let marks = vec!["?"; filter.statuses.len()].join(", ");
        selection.add(
            &format!("status IN ({marks})"),
            filter
                .statuses
                .iter()
                .map(|s| Param::Text(s.as_str().into()))
                .collect(),
        );
        match &filter.step {
            Some(StepMatch::Is(name)) => {
                selection.add("operation_type = ?", vec![Param::Text(name.clone())])
            }
            // `substr` and `length` count characters on both backends.
            Some(StepMatch::StartsWith(head)) => selection.add(
                "substr(operation_type, 1, length(?)) = ?",
                vec![Param::Text(head.clone()), Param::Text(head.clone())],
            ),
            None => {}
        }
        if let Some(from) = filter.created_from {
            selection.add("created_at >= ?", vec![Param::Int(to_ms(from))]);
        }
        if let Some(to) = filter.created_to {
            selection.add("created_at <= ?", vec![Param::Int(to_ms(to))]);
        }
        let total = self.count(&selection).await?;
        let limit = Param::Int(i64::from(paging.limit) + 1);
        let (before, rows) = match start {
            Start::At(order, id) => {
                let mut earlier = Selection {
                    conditions: selection.conditions.clone(),
                    params: selection.params.clone(),
                };
                earlier.add(
                    "(queue_order < ? OR (queue_order = ? AND id < ?))",
                    vec![Param::Int(order), Param::Int(order), Param::Text(id.db())],
                );
                let before = self.count(&earlier).await?;
                selection.add(
                    "(queue_order > ? OR (queue_order = ? AND id >= ?))",
                    vec![Param::Int(order), Param::Int(order), Param::Text(id.db())],
                );
                (before, self.ids(selection, limit, None).await?)
            }
            Start::Offset(n) => {
                let offset = Param::Int(i64::try_from(n).unwrap_or(i64::MAX));
                (n, self.ids(selection, limit, Some(offset)).await?)
            }
        };
        Ok(Some(TaskRows {
            total,
            before,
            rows,
        }))
    }

    /// Where a task of the project stands in submission order.
    async fn queue_order(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: OperationId,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT queue_order FROM operations WHERE id = $1 AND project_id = $2 AND tenant_id = $3",
        )
        .bind(id.db())
        .bind(project.db())
        .bind(tenant.db())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("queue_order")).transpose()?)
    }

    async fn count(&self, selection: &Selection) -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM operations WHERE {}",
            selection.where_clause()
        );
        let n: i64 = bind_params(sqlx::query(&sql), selection.params.clone())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    async fn ids(
        &self,
        mut selection: Selection,
        limit: Param,
        offset: Option<Param>,
    ) -> Result<Vec<OperationId>> {
        let mut sql = format!(
            "SELECT id FROM operations WHERE {} ORDER BY queue_order, id LIMIT ${}",
            selection.where_clause(),
            selection.params.len() + 1
        );
        selection.params.push(limit);
        if let Some(offset) = offset {
            selection.params.push(offset);
            sql.push_str(&format!(" OFFSET ${}", selection.params.len()));
        }
        bind_params(sqlx::query(&sql), selection.params)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                id.parse().map_err(StoreError::corrupt)
            })
            .collect()
    }
}
